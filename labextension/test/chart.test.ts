// Unit tests of the chart module's data side: the kernel -> view protocol (snapshots,
// sequence numbers), smoothing, min/max buckets and the shared x column.
// Run with `npm test` (node's test runner); pytest runs it too (tests/test_chart_js.py).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { SeriesStore, Line, float64 } from '../src/chart/series';
import {
  align,
  BucketAccumulator,
  ema,
  emaInto,
  gridCentres,
  gridFor
} from '../src/chart/shape';
import { fmtDuration, fmtNum } from '../src/chart/format';

const f = (xs: number[]): Float64Array => new Float64Array(xs);
const points = (store: SeriesStore, id: string): [number[], number[]] => {
  const l = store.get(id)!;
  return [Array.from(l.x.subarray(0, l.n)), Array.from(l.y.subarray(0, l.n))];
};

test('messages before the snapshot are ignored, the snapshot replaces everything', () => {
  const s = new SeriesStore();
  assert.equal(s.apply({ type: 'append', seq: 1, series: [{ id: 'a', n: 1 }] }, [f([0]), f([1])]), null);
  assert.equal(s.points, 0);
  s.append('stale', [0], [0]);
  const applied = s.apply({ type: 'snapshot', seq: 5, series: [{ id: 'a', n: 2 }] }, [f([0, 1]), f([3, 2])]);
  assert.ok(applied && applied.all);
  assert.deepEqual([...s.lines.keys()], ['a']);
  assert.deepEqual(points(s, 'a'), [[0, 1], [3, 2]]);
});

test('appends after the snapshot add only newer sequence numbers', () => {
  const s = new SeriesStore();
  s.apply({ type: 'snapshot', seq: 5, series: [{ id: 'a', n: 1 }] }, [f([0]), f([1])]);
  // seq 4 was already part of the snapshot: dropped, not doubled
  assert.equal(s.apply({ type: 'append', seq: 4, series: [{ id: 'a', n: 1 }] }, [f([1]), f([9])]), null);
  const applied = s.apply(
    { type: 'append', seq: 6, series: [{ id: 'a', n: 2 }, { id: 'b', n: 1 }] },
    [f([1, 2]), f([0.5, 0.25]), f([7]), f([1])]
  );
  assert.deepEqual([...applied!.changed].sort(), ['a', 'b']);
  assert.deepEqual(points(s, 'a'), [[0, 1, 2], [1, 0.5, 0.25]]);
  assert.deepEqual(points(s, 'b'), [[7], [1]]);
  assert.equal(s.apply({ type: 'append', seq: 6, series: [{ id: 'a', n: 1 }] }, [f([3]), f([3])]), null);
  assert.equal(s.get('a')!.n, 3);
});

test('replace, remove and clear', () => {
  const s = new SeriesStore();
  s.apply({ type: 'snapshot', seq: 1, series: [{ id: 'a', n: 2 }, { id: 'b', n: 1 }] }, [
    f([0, 1]), f([1, 2]), f([0]), f([5])
  ]);
  s.apply({ type: 'replace', seq: 2, id: 'a' }, [f([10, 20, 30]), f([1, 2, 3])]);
  assert.deepEqual(points(s, 'a'), [[10, 20, 30], [1, 2, 3]]);
  s.apply({ type: 'remove', seq: 3, id: 'b' }, []);
  assert.deepEqual([...s.lines.keys()], ['a']);
  const cleared = s.apply({ type: 'clear', seq: 4 }, []);
  assert.ok(cleared!.all);
  assert.equal(s.points, 0);
  assert.equal(s.apply({ type: 'bogus', seq: 5 }, []), null);
  assert.equal(s.apply({ type: 'append' }, []), null, 'a message without seq is not ours');
});

test('buffers arrive as unaligned DataViews', () => {
  const raw = new ArrayBuffer(8 * 3 + 4);
  const view = new DataView(raw, 4, 24);
  [1.5, 2.5, 3.5].forEach((v, i) => view.setFloat64(i * 8, v, true));
  assert.deepEqual(Array.from(float64(view)), [1.5, 2.5, 3.5]);
});

test('a line keeps NaN as a gap, drops points without x, sorts late points', () => {
  const l = new Line(2);
  l.push([0, 1, NaN, 2], [1, NaN, 5, 3]);
  assert.equal(l.n, 3);
  assert.ok(Number.isNaN(l.y[1]));
  l.push([1.5], [9]);
  assert.equal(l.sorted, false);
  l.ensureSorted();
  assert.deepEqual(Array.from(l.x.subarray(0, l.n)), [0, 1, 1.5, 2]);
  assert.deepEqual(Array.from(l.y.subarray(0, l.n)).map(v => (Number.isNaN(v) ? 'nan' : v)), [1, 'nan', 9, 3]);
  assert.equal(l.nearest(1.6), 2);
  assert.equal(l.nearest(-5), 0);
  assert.equal(l.nearest(99), 3);
});

test('ema is debiased (starts at the first value) and skips NaN', () => {
  const out = ema(f([2, 2, 2]), 3, 0.9);
  assert.deepEqual(Array.from(out), [2, 2, 2]);
  const withNan = ema(f([1, NaN, 3]), 3, 0.5);
  assert.equal(withNan[0], 1);
  assert.ok(Number.isNaN(withNan[1]));
  // (0.5*0.5*1 + 0.5*3) / (0.5*0.5 + 0.5) = 1.75 / 0.75
  assert.ok(Math.abs(withNan[2] - 1.75 / 0.75) < 1e-12);
  assert.deepEqual(Array.from(ema(f([4, 1]), 2, 0)), [4, 1], 'weight 0 is the raw curve');
});

test('buckets keep the spike: min/max per bucket, mean as the line', () => {
  const n = 1000;
  const xs = new Float64Array(n).map((_, i) => i);
  const ys = new Float64Array(n).fill(1);
  ys[500] = 100; // one spike
  ys[10] = NaN;
  const grid = gridFor(0, n - 1, 10); // buckets of 128: 8 of them over [0, 999]
  const acc = new BucketAccumulator(grid);
  acc.add(xs, ys, ys, 0, n, grid);
  const b = acc.summary(grid.count, gridCentres(grid));
  assert.equal(b.x.length, 8);
  const spike = Array.from(b.hi).indexOf(100);
  assert.equal(spike, 3, 'x=500 falls in bucket 3 (500 / 128)');
  assert.equal(Math.min(...Array.from(b.lo)), 1);
  assert.equal(b.count[0], 127, 'the NaN is left out');
  assert.equal(b.count.reduce((a, c) => a + c, 0), 999, 'the last x lands in the last bucket');
  assert.ok(b.mid[3] > 1 && b.mid[3] < 2);
});

test('align shares one x column; missing points are bridged, NaN is a gap', () => {
  const same = align([
    { x: f([0, 1, 2]), n: 3, columns: [f([1, NaN, 3])] },
    { x: f([0, 1, 2]), n: 3, columns: [f([4, 5, 6])] }
  ]);
  assert.deepEqual(same, [[0, 1, 2], [1, null, 3], [4, 5, 6]]);
  const merged = align([
    { x: f([0, 2]), n: 2, columns: [f([1, 3]), f([10, 30])] },
    { x: f([1, 2, 3]), n: 3, columns: [f([5, 6, 7])] }
  ]);
  assert.deepEqual(merged, [
    [0, 1, 2, 3],
    [1, undefined, 3, undefined],
    [10, undefined, 30, undefined],
    [undefined, 5, 6, 7]
  ]);
  const log = align([{ x: f([0, 1]), n: 2, columns: [f([0, 2])] }], true);
  assert.deepEqual(log, [[0, 1], [null, 2]], 'a log axis cannot draw 0');
});

test('numbers read at 4 significant digits, durations as m:ss', () => {
  assert.equal(fmtNum(0.123456), '0.1235');
  assert.equal(fmtNum(12345), '12.3k');
  assert.equal(fmtNum(NaN), '–');
  assert.equal(fmtDuration(4), '0:04');
  assert.equal(fmtDuration(3725), '1:02:05');
});

test('a live series adds only its new points to a grid that stays put', () => {
  const n = 5000;
  const xs = new Float64Array(n).map((_, i) => i);
  const ys = new Float64Array(n).map((_, i) => Math.sin(i / 50) + (i === 3000 ? 9 : 0));
  ys[100] = NaN;
  // Grow the range in refreshes: the grid keeps x0 and w until the range doubles.
  let acc: BucketAccumulator | null = null;
  let rebuilt = 0;
  for (let end = 100; end <= n; end += 100) {
    const grid = gridFor(0, end - 1, 300);
    if (!acc || !acc.fits(grid)) {
      acc = new BucketAccumulator(grid);
      rebuilt++;
    }
    acc.add(xs, ys, ys, acc.done, end, grid);
  }
  assert.ok(rebuilt <= 8, `the grid was rebuilt ${rebuilt} times in 50 refreshes`);
  // The same summary as bucketing everything at once on the final grid.
  const grid = gridFor(0, n - 1, 300);
  const whole = new BucketAccumulator(grid);
  whole.add(xs, ys, ys, 0, n, grid);
  const a = acc!.summary(grid.count, gridCentres(grid));
  const b = whole.summary(grid.count, gridCentres(grid));
  assert.deepEqual(Array.from(a.count), Array.from(b.count));
  assert.deepEqual(Array.from(a.hi), Array.from(b.hi));
  assert.ok(Array.from(a.hi).includes(9 + Math.sin(3000 / 50)), 'the spike is in a band');
  assert.equal(a.bad.reduce((s, c) => s + c, 0), 1, 'the NaN makes its bucket a gap, not a point');
  assert.ok(grid.count <= 300 && grid.count > 150, `${grid.count} buckets for a target of 300`);
});

test('the EMA continues over new points exactly as over all of them', () => {
  const ys = new Float64Array(1000).map((_, i) => Math.cos(i) + (i === 500 ? NaN : 0));
  const whole = ema(ys, 1000, 0.9);
  const out = new Float64Array(1000);
  const state = { acc: 0, norm: 0 };
  emaInto(ys, 0, 400, 0.9, state, out);
  emaInto(ys, 400, 1000, 0.9, state, out);
  assert.deepEqual(Array.from(out).map(String), Array.from(whole).map(String));
});
