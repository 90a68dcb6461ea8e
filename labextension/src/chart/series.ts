// The points of every series a chart holds, and the kernel -> view protocol that fills
// them. No DOM here: node's test runner exercises it directly.
//
// Protocol (kernel -> view; every message carries a sequence number `seq`):
//   snapshot {series: [{id, n}]}  buffers x0, y0, x1, y1, ... (float64): replaces all data
//   append   {series: [{id, n}]}  buffers as above: only new points
//   replace  {id}                 buffers x, y: one whole series
//   remove   {id};  clear {}
// view -> kernel: {type: "snapshot"} when a view starts. Until its snapshot arrives a view
// ignores everything else (the snapshot already contains it), then drops older seqs.

/** One series' points in growable typed arrays (doubling: appends are amortised O(1)). */
export class Line {
  x: Float64Array;
  y: Float64Array;
  n = 0;
  /** x never decreases (what binary search and the x range rely on). */
  sorted = true;
  /** Bumped on every change, so views can cache what they derive from the points. */
  version = 0;
  /** Bumped when points already held change place (a sort): caches must start over. */
  resets = 0;

  constructor(capacity = 256) {
    this.x = new Float64Array(capacity);
    this.y = new Float64Array(capacity);
  }

  /** Add points; a point without a finite x cannot be placed and is dropped. */
  push(xs: ArrayLike<number | null>, ys: ArrayLike<number | null>): void {
    const count = Math.min(xs.length, ys.length);
    this._reserve(this.n + count);
    if (xs instanceof Float64Array && ys instanceof Float64Array && this._pushTyped(xs, ys, count)) {
      return;
    }
    let prev = this.n ? this.x[this.n - 1] : -Infinity;
    let n = this.n;
    for (let i = 0; i < count; i++) {
      const x = xs[i];
      if (x === null || x === undefined || !Number.isFinite(x)) {
        continue;
      }
      const y = ys[i];
      if (x < prev) {
        this.sorted = false;
      }
      prev = x;
      this.x[n] = x;
      // NaN marks a gap (a non-finite metric): kept, never drawn, never joined across.
      this.y[n] = y === null || y === undefined ? NaN : y;
      n++;
    }
    this.n = n;
    this.version++;
  }

  /** The kernel's buffers: copied in bulk when every x is finite (the usual case). */
  private _pushTyped(xs: Float64Array, ys: Float64Array, count: number): boolean {
    let prev = this.n ? this.x[this.n - 1] : -Infinity;
    let sorted = this.sorted;
    for (let i = 0; i < count; i++) {
      const x = xs[i];
      if (x - x !== 0) {
        return false; // NaN or inf x: the point-by-point path drops it
      }
      if (x < prev) {
        sorted = false;
      }
      prev = x;
    }
    this.x.set(count === xs.length ? xs : xs.subarray(0, count), this.n);
    this.y.set(count === ys.length ? ys : ys.subarray(0, count), this.n);
    this.n += count;
    this.sorted = sorted;
    this.version++;
    return true;
  }

  /** Sort by x when points arrived out of order (stable for equal x). */
  ensureSorted(): void {
    if (this.sorted) {
      return;
    }
    const order = Array.from({ length: this.n }, (_, i) => i);
    order.sort((a, b) => this.x[a] - this.x[b] || a - b);
    const x = new Float64Array(this.x.length);
    const y = new Float64Array(this.y.length);
    order.forEach((from, to) => {
      x[to] = this.x[from];
      y[to] = this.y[from];
    });
    this.x = x;
    this.y = y;
    this.sorted = true;
    this.version++;
    this.resets++;
  }

  /** Index of the point whose x is nearest `x` (-1 when empty). */
  nearest(x: number): number {
    this.ensureSorted();
    if (this.n === 0) {
      return -1;
    }
    let a = 0;
    let b = this.n - 1;
    while (b - a > 1) {
      const mid = (a + b) >> 1;
      if (this.x[mid] < x) {
        a = mid;
      } else {
        b = mid;
      }
    }
    return Math.abs(this.x[a] - x) <= Math.abs(this.x[b] - x) ? a : b;
  }

  private _reserve(need: number): void {
    if (need <= this.x.length) {
      return;
    }
    let cap = Math.max(16, this.x.length);
    while (cap < need) {
      cap *= 2;
    }
    const x = new Float64Array(cap);
    const y = new Float64Array(cap);
    x.set(this.x.subarray(0, this.n));
    y.set(this.y.subarray(0, this.n));
    this.x = x;
    this.y = y;
  }
}

/** What one message did: which series changed, or that everything did. */
export interface IApplied {
  changed: Set<string>;
  all: boolean;
}

export interface IMessage {
  type?: unknown;
  seq?: unknown;
  series?: { id: string; n: number }[];
  id?: string;
}

/** A float64 array from a message buffer (a DataView, ArrayBuffer or typed array). */
export function float64(buffer: ArrayBuffer | ArrayBufferView): Float64Array {
  if (buffer instanceof Float64Array) {
    return buffer;
  }
  if (ArrayBuffer.isView(buffer)) {
    // A view when the bytes are 8-aligned (lines copy what they keep); offsets of a
    // DataView into a message need not be, and then it is a copy.
    if (buffer.byteOffset % 8 === 0) {
      return new Float64Array(buffer.buffer, buffer.byteOffset, buffer.byteLength / 8);
    }
    const bytes = buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength);
    return new Float64Array(bytes as ArrayBuffer);
  }
  return new Float64Array(buffer);
}

/** Every series of a chart, keyed by id, kept in step with the kernel's messages. */
export class SeriesStore {
  readonly lines = new Map<string, Line>();
  /** Sequence number of the last message applied; null until the snapshot arrived. */
  seq: number | null = null;

  get(id: string): Line | undefined {
    return this.lines.get(id);
  }

  /** Points held, all series. */
  get points(): number {
    let n = 0;
    for (const line of this.lines.values()) {
      n += line.n;
    }
    return n;
  }

  /** Add points to series `id` (created on first use). */
  append(id: string, xs: ArrayLike<number | null>, ys: ArrayLike<number | null>): void {
    let line = this.lines.get(id);
    if (!line) {
      line = new Line(Math.max(16, xs.length));
      this.lines.set(id, line);
    }
    line.push(xs, ys);
  }

  replace(id: string, xs: ArrayLike<number | null>, ys: ArrayLike<number | null>): void {
    const line = new Line(Math.max(16, xs.length));
    line.push(xs, ys);
    const old = this.lines.get(id);
    line.version = (old?.version ?? 0) + 1;
    this.lines.set(id, line);
  }

  remove(id: string): boolean {
    return this.lines.delete(id);
  }

  clear(): void {
    this.lines.clear();
  }

  /**
   * Apply one kernel message; null when it was ignored (before the snapshot, stale, or
   * not ours). Buffers are float64 arrays in the order the message lists its series.
   */
  apply(msg: IMessage, buffers: (ArrayBuffer | ArrayBufferView)[]): IApplied | null {
    if (!msg || typeof msg.seq !== 'number') {
      return null;
    }
    const seq = msg.seq;
    if (msg.type === 'snapshot') {
      this.clear();
      const changed = this._ingest(msg, buffers);
      this.seq = seq;
      return { changed, all: true };
    }
    if (this.seq === null || seq <= this.seq) {
      return null; // the snapshot this view asked for already holds it
    }
    this.seq = seq;
    switch (msg.type) {
      case 'append':
        return { changed: this._ingest(msg, buffers), all: false };
      case 'replace':
        if (typeof msg.id !== 'string' || buffers.length < 2) {
          return null;
        }
        this.replace(msg.id, float64(buffers[0]), float64(buffers[1]));
        return { changed: new Set([msg.id]), all: false };
      case 'remove':
        if (typeof msg.id !== 'string') {
          return null;
        }
        this.remove(msg.id);
        return { changed: new Set([msg.id]), all: false };
      case 'clear':
        this.clear();
        return { changed: new Set(), all: true };
      default:
        return null;
    }
  }

  private _ingest(msg: IMessage, buffers: (ArrayBuffer | ArrayBufferView)[]): Set<string> {
    const changed = new Set<string>();
    (msg.series ?? []).forEach((s, i) => {
      if (2 * i + 1 >= buffers.length) {
        return;
      }
      this.append(s.id, float64(buffers[2 * i]), float64(buffers[2 * i + 1]));
      changed.add(s.id);
    });
    return changed;
  }
}
