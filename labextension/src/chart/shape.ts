// What a panel draws, derived from the points held: smoothing, min/max buckets for dense
// series, and one shared x column for uPlot. No DOM: node's test runner exercises it.

/**
 * Debiased exponential moving average, as TensorBoard draws it: the first points are not
 * pulled toward zero. Non-finite values pass through and do not reset the average.
 */
export function ema(ys: ArrayLike<number>, n: number, weight: number): Float64Array {
  const out = new Float64Array(n);
  let acc = 0;
  let norm = 0;
  for (let i = 0; i < n; i++) {
    const v = ys[i];
    if (!Number.isFinite(v)) {
      out[i] = v;
      continue;
    }
    acc = acc * weight + (1 - weight) * v;
    norm = norm * weight + (1 - weight);
    out[i] = acc / norm;
  }
  return out;
}

/** Per-bucket summary of a dense series: a line through the means, a band min..max. */
export interface IBuckets {
  /** Bucket centres (shared by every series bucketed over the same range and count). */
  x: Float64Array;
  mid: Float64Array;
  lo: Float64Array;
  hi: Float64Array;
  /** Points per bucket (0: no point there; its values are NaN). */
  count: Uint32Array;
}

/**
 * Split [x0, x1] into `buckets` equal parts and summarise the points of each: the mean of
 * `line` (raw or smoothed values) and the min and max of `raw`, so a spike stays visible
 * however many points share a pixel. Non-finite values are left out.
 */
export function bucketize(
  xs: ArrayLike<number>,
  raw: ArrayLike<number>,
  line: ArrayLike<number>,
  n: number,
  x0: number,
  x1: number,
  buckets: number
): IBuckets {
  const count = new Uint32Array(buckets);
  const sum = new Float64Array(buckets);
  const lo = new Float64Array(buckets).fill(Infinity);
  const hi = new Float64Array(buckets).fill(-Infinity);
  const span = x1 - x0 || 1;
  const scale = buckets / span;
  for (let i = 0; i < n; i++) {
    const r = raw[i];
    const v = line[i];
    if (!Number.isFinite(r) || !Number.isFinite(v)) {
      continue;
    }
    let b = Math.floor((xs[i] - x0) * scale);
    if (b < 0 || b > buckets) {
      continue;
    }
    if (b === buckets) {
      b = buckets - 1; // x1 itself belongs to the last bucket
    }
    count[b]++;
    sum[b] += v;
    if (r < lo[b]) {
      lo[b] = r;
    }
    if (r > hi[b]) {
      hi[b] = r;
    }
  }
  const x = new Float64Array(buckets);
  const mid = new Float64Array(buckets);
  const width = span / buckets;
  for (let b = 0; b < buckets; b++) {
    x[b] = x0 + (b + 0.5) * width;
    if (count[b] === 0) {
      mid[b] = lo[b] = hi[b] = NaN;
    } else {
      mid[b] = sum[b] / count[b];
    }
  }
  return { x, mid, lo, hi, count };
}

/** uPlot's value for "no point at this x" (bridged) and "a gap here" (not joined). */
export type Cell = number | null | undefined;

/** Columns that share one x array (e.g. a series' line and its band edges). */
export interface IPart {
  x: ArrayLike<number>;
  n: number;
  /** Each column has `n` values; NaN (and, on a log axis, values <= 0) become gaps. */
  columns: ArrayLike<number>[];
}

function sameX(a: IPart, b: IPart): boolean {
  if (a.x === b.x && a.n === b.n) {
    return true;
  }
  if (a.n !== b.n) {
    return false;
  }
  for (let i = 0; i < a.n; i++) {
    if (a.x[i] !== b.x[i]) {
      return false;
    }
  }
  return true;
}

/**
 * One x column for every part and each column re-indexed onto it (uPlot's data layout).
 * Parts must be sorted by x. Where a part has no point at an x the cell is `undefined`
 * (the line bridges it); a non-finite value is `null` (a real gap). When every part has
 * the same x (runs logged at the same steps) nothing is merged.
 */
export function align(parts: IPart[], logY = false): Cell[][] {
  const cell = (v: number): Cell => (Number.isFinite(v) && (!logY || v > 0) ? v : null);
  if (parts.length === 0) {
    return [[]];
  }
  const shared = parts.every(p => sameX(parts[0], p));
  if (shared) {
    const n = parts[0].n;
    const x = Array.from({ length: n }, (_, i) => parts[0].x[i]);
    const out: Cell[][] = [x];
    for (const p of parts) {
      for (const col of p.columns) {
        const c: Cell[] = new Array(n);
        for (let i = 0; i < n; i++) {
          c[i] = cell(col[i]);
        }
        out.push(c);
      }
    }
    return out;
  }
  let total = 0;
  for (const p of parts) {
    total += p.n;
  }
  const all = new Float64Array(total);
  let k = 0;
  for (const p of parts) {
    for (let i = 0; i < p.n; i++) {
      all[k++] = p.x[i];
    }
  }
  all.sort();
  const xs: number[] = [];
  for (let i = 0; i < total; i++) {
    if (i === 0 || all[i] !== all[i - 1]) {
      xs.push(all[i]);
    }
  }
  const out: Cell[][] = [xs];
  for (const p of parts) {
    const cols: Cell[][] = p.columns.map(() => new Array(xs.length).fill(undefined));
    let j = 0;
    for (let i = 0; i < p.n; i++) {
      const x = p.x[i];
      while (xs[j] < x) {
        j++;
      }
      for (let c = 0; c < cols.length; c++) {
        cols[c][j] = cell(p.columns[c][i]);
      }
    }
    out.push(...cols);
  }
  return out;
}
