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

/** Per-bucket summary of a series: a line through the means, a band min..max. */
export interface IBuckets {
  /** Bucket centres (shared by every series bucketed over the same range and count). */
  x: Float64Array;
  /** Mean of `line` (raw or smoothed values) per bucket. */
  mid: Float64Array;
  /** Mean of the raw values per bucket. */
  rawMid: Float64Array;
  lo: Float64Array;
  hi: Float64Array;
  /** Finite points per bucket (0: no point there; its values are NaN). */
  count: Uint32Array;
  /** Non-finite points per bucket (a bucket with only these is a gap, not a bridge). */
  bad: Uint32Array;
  /** The most points any bucket holds (1: the series is sparser than the buckets). */
  maxCount: number;
}

/** Centres of `buckets` equal parts of [x0, x1] (share one array between series). */
export function bucketCentres(x0: number, x1: number, buckets: number): Float64Array {
  const x = new Float64Array(buckets);
  const width = (x1 - x0 || 1) / buckets;
  for (let b = 0; b < buckets; b++) {
    x[b] = x0 + (b + 0.5) * width;
  }
  return x;
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
  buckets: number,
  centres?: Float64Array,
  reuse?: IBuckets
): IBuckets {
  // A live chart rebuckets on every refresh: reuse the last arrays (no garbage per frame).
  const same = reuse !== undefined && reuse.count.length === buckets;
  const count = same ? reuse.count.fill(0) : new Uint32Array(buckets);
  const bad = same ? reuse.bad.fill(0) : new Uint32Array(buckets);
  const sum = same ? reuse.mid.fill(0) : new Float64Array(buckets);
  const rawSum = same ? reuse.rawMid.fill(0) : new Float64Array(buckets);
  const lo = (same ? reuse.lo : new Float64Array(buckets)).fill(Infinity);
  const hi = (same ? reuse.hi : new Float64Array(buckets)).fill(-Infinity);
  const span = x1 - x0 || 1;
  const scale = buckets / span;
  // Kept to the fewest operations per point: a chart's first render runs this before
  // the JIT has warmed up. `v - v !== 0` is true for NaN and +-inf alike.
  const last = buckets - 1;
  for (let i = 0; i < n; i++) {
    const d = xs[i] - x0;
    if (d < 0) {
      continue;
    }
    let b = Math.floor(d * scale);
    if (b > last) {
      if (b > buckets) {
        continue;
      }
      b = last; // x1 itself belongs to the last bucket
    }
    const r = raw[i];
    const v = raw === line ? r : line[i];
    if (r - r !== 0 || v - v !== 0) {
      bad[b]++;
      continue;
    }
    count[b]++;
    sum[b] += v;
    rawSum[b] += r;
    if (r < lo[b]) {
      lo[b] = r;
    }
    if (r > hi[b]) {
      hi[b] = r;
    }
  }
  const x = centres ?? bucketCentres(x0, x1, buckets);
  // The sums become the means in place.
  const mid = sum;
  const rawMid = rawSum;
  let maxCount = 0;
  for (let b = 0; b < buckets; b++) {
    if (count[b] === 0) {
      mid[b] = rawMid[b] = lo[b] = hi[b] = NaN;
    } else {
      mid[b] = sum[b] / count[b];
      rawMid[b] = rawSum[b] / count[b];
      if (count[b] > maxCount) {
        maxCount = count[b];
      }
    }
  }
  return { x, mid, rawMid, lo, hi, count, bad, maxCount };
}

/** uPlot's value for "no point at this x" (bridged) and "a gap here" (not joined). */
export type Cell = number | null | undefined;

/** Columns that share one x array (e.g. a series' line and its band edges). */
export interface IPart {
  x: ArrayLike<number>;
  n: number;
  /** Each column has `n` values; NaN (and, on a log axis, values <= 0) become gaps. */
  columns: ArrayLike<number>[];
  /** Bucketed parts: points per bucket. An empty bucket is bridged (no point there),
   * unless `bad` counts non-finite points in it: then it is a gap. */
  count?: Uint32Array;
  bad?: Uint32Array;
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
  const value = (v: number): Cell => (Number.isFinite(v) && (!logY || v > 0) ? v : null);
  const cellOf = (p: IPart, col: ArrayLike<number>, i: number): Cell =>
    p.count && p.count[i] === 0 ? (p.bad && p.bad[i] > 0 ? null : undefined) : value(col[i]);
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
          c[i] = cellOf(p, col, i);
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
        cols[c][j] = cellOf(p, p.columns[c], i);
      }
    }
    out.push(...cols);
  }
  return out;
}
