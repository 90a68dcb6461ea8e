// What a panel draws, derived from the points held: smoothing, min/max buckets for dense
// series, and one shared x column for uPlot. No DOM: node's test runner exercises it.

/**
 * Debiased exponential moving average, as TensorBoard draws it: the first points are not
 * pulled toward zero. Non-finite values pass through and do not reset the average.
 */
export function ema(ys: ArrayLike<number>, n: number, weight: number): Float64Array {
  const out = new Float64Array(n);
  emaInto(ys, 0, n, weight, { acc: 0, norm: 0 }, out);
  return out;
}

/** The EMA's running state: continue it over new points without redoing the old. */
export interface IEmaState {
  acc: number;
  norm: number;
}

/** Smooth ys[from, to) into out[from, to), continuing from `state` (updated in place). */
export function emaInto(
  ys: ArrayLike<number>,
  from: number,
  to: number,
  weight: number,
  state: IEmaState,
  out: Float64Array
): void {
  let { acc, norm } = state;
  for (let i = from; i < to; i++) {
    const v = ys[i];
    if (v - v !== 0) {
      out[i] = v; // NaN and inf pass through and do not reset the average
      continue;
    }
    acc = acc * weight + (1 - weight) * v;
    norm = norm * weight + (1 - weight);
    out[i] = acc / norm;
  }
  state.acc = acc;
  state.norm = norm;
}

/** Per-bucket summary of a series: a line through the means, a band min..max. */
export interface IBuckets {
  /** Bucket centres (shared by every series bucketed on the same grid). */
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

/** Whether two sorted x columns are the same points (the same array, or equal values). */
export function sameX(
  ax: ArrayLike<number>,
  an: number,
  bx: ArrayLike<number>,
  bn: number
): boolean {
  if (an !== bn) {
    return false;
  }
  if (ax === bx) {
    return true;
  }
  for (let i = 0; i < an; i++) {
    if (ax[i] !== bx[i]) {
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
  const shared = parts.every(p => sameX(parts[0].x, parts[0].n, p.x, p.n));
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

/**
 * A bucket grid that stays put while a live series grows: buckets of width `w` (a power
 * of two) from `x0`, so new points are added to the buckets they fall in (O(new points)
 * per refresh) and the grid only changes when the range outgrows it (the width doubles:
 * amortised O(1) per point).
 */
export interface IGrid {
  x0: number;
  w: number;
  count: number;
}

/** The grid for [lo, hi] with at most about `buckets` buckets (`w` a power of two). */
export function gridFor(lo: number, hi: number, buckets: number): IGrid {
  const span = Math.max(hi - lo, Number.MIN_VALUE);
  const w = 2 ** Math.ceil(Math.log2(span / Math.max(1, buckets)));
  const x0 = Math.floor(lo / w) * w;
  return { x0, w, count: Math.floor((hi - x0) / w) + 1 };
}

/** Running per-bucket sums of one series on a grid; `add` only what is new. */
export class BucketAccumulator {
  grid: IGrid;
  /** Points of the series added so far (the caller adds [done, n) next time). */
  done = 0;
  count: Uint32Array;
  bad: Uint32Array;
  sum: Float64Array;
  rawSum: Float64Array;
  lo: Float64Array;
  hi: Float64Array;
  maxCount = 0;

  constructor(grid: IGrid) {
    this.grid = { ...grid };
    const n = Math.max(16, grid.count);
    this.count = new Uint32Array(n);
    this.bad = new Uint32Array(n);
    this.sum = new Float64Array(n);
    this.rawSum = new Float64Array(n);
    this.lo = new Float64Array(n).fill(Infinity);
    this.hi = new Float64Array(n).fill(-Infinity);
  }

  /** Whether points can still be added on `grid` (same x0 and w; more buckets is fine). */
  fits(grid: IGrid): boolean {
    return grid.x0 === this.grid.x0 && grid.w === this.grid.w;
  }

  /** Add points [from, to) of a series (`line`: raw or smoothed values, `raw`: raw). */
  add(xs: ArrayLike<number>, raw: ArrayLike<number>, line: ArrayLike<number>, from: number, to: number, grid: IGrid): void {
    this._reserve(grid.count);
    this.grid.count = Math.max(this.grid.count, grid.count);
    const { x0, w } = this.grid;
    const last = this.grid.count - 1;
    const scale = 1 / w;
    for (let i = from; i < to; i++) {
      const d = xs[i] - x0;
      if (d < 0) {
        continue;
      }
      let b = Math.floor(d * scale);
      if (b > last) {
        b = last;
      }
      const r = raw[i];
      const v = raw === line ? r : line[i];
      if (r - r !== 0 || v - v !== 0) {
        this.bad[b]++;
        continue;
      }
      const c = ++this.count[b];
      if (c > this.maxCount) {
        this.maxCount = c;
      }
      this.sum[b] += v;
      this.rawSum[b] += r;
      if (r < this.lo[b]) {
        this.lo[b] = r;
      }
      if (r > this.hi[b]) {
        this.hi[b] = r;
      }
    }
    this.done = Math.max(this.done, to);
  }

  /** The per-bucket summary (fresh arrays of `count` buckets; NaN where empty). */
  summary(count: number, centres: Float64Array): IBuckets {
    this._reserve(count);
    const mid = new Float64Array(count);
    const rawMid = new Float64Array(count);
    const lo = new Float64Array(count);
    const hi = new Float64Array(count);
    for (let b = 0; b < count; b++) {
      const c = this.count[b];
      if (c === 0) {
        mid[b] = rawMid[b] = lo[b] = hi[b] = NaN;
      } else {
        mid[b] = this.sum[b] / c;
        rawMid[b] = this.rawSum[b] / c;
        lo[b] = this.lo[b];
        hi[b] = this.hi[b];
      }
    }
    return {
      x: centres,
      mid,
      rawMid,
      lo,
      hi,
      count: this.count.subarray(0, count),
      bad: this.bad.subarray(0, count),
      maxCount: this.maxCount
    };
  }

  private _reserve(count: number): void {
    if (count <= this.count.length) {
      return;
    }
    let cap = this.count.length;
    while (cap < count) {
      cap *= 2;
    }
    const grow = <T extends Uint32Array | Float64Array>(a: T, fill: number): T => {
      const b = new (a.constructor as { new (n: number): T })(cap);
      b.fill(fill);
      b.set(a);
      return b;
    };
    this.count = grow(this.count, 0);
    this.bad = grow(this.bad, 0);
    this.sum = grow(this.sum, 0);
    this.rawSum = grow(this.rawSum, 0);
    this.lo = grow(this.lo, Infinity);
    this.hi = grow(this.hi, -Infinity);
  }
}

/** Centres of a grid's buckets. */
export function gridCentres(grid: IGrid): Float64Array {
  const x = new Float64Array(grid.count);
  for (let b = 0; b < grid.count; b++) {
    x[b] = grid.x0 + (b + 0.5) * grid.w;
  }
  return x;
}
