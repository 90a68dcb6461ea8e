// The one chart of the product: small multiples of line series drawn by uPlot, used by
// the notebook's LiveChart widget (through widget.ts) and by the JupyterLab panels.
//
// uPlot draws; what is ours stays here: the panel layout (train and validation of one
// quantity share a panel), smoothing, min/max bands of dense series, NaN gaps, a cursor
// synced across panels with every series' raw and smoothed value, x zoom shared by all
// panels, legend toggles that hide a run everywhere, and the theme.

import uPlot from 'uplot';

import { Line, SeriesStore } from './series';
import {
  align,
  BucketAccumulator,
  emaInto,
  gridCentres,
  gridFor,
  IEmaState,
  IPart,
  sameX
} from './shape';
import {
  DURATION_INCRS,
  escapeHtml,
  fmtDuration,
  fmtNum,
  fmtX,
  INTEGER_INCRS,
  withAlpha,
  XFormat
} from './format';
import { CHART_CSS } from './style';

export interface ISeriesMeta {
  id: string;
  panel: string;
  label: string;
  color: string;
  /** Non-finite values the kernel holds for this series (noted under the panel). */
  nonfinite?: number;
}

export interface IChartOptions {
  xLabel: string;
  xFormat: XFormat;
  logY: boolean;
  /** EMA weight 0..0.99; the smoothed line is drawn, the raw values faint behind. */
  smoothing: number;
  /** Height of each panel's plot in pixels. */
  height: number;
  /** x axes the owner can switch to, [key, label]; a selector shows when there are two. */
  xChoices: [string, string][];
  xAxis: string;
  /** Series are runs (a comparison): offer "align to shortest". */
  runs: boolean;
}

/** One row of the hover readout: a series' point nearest the cursor. */
export interface IReading {
  id: string;
  label: string;
  color: string;
  x: number;
  raw: number;
  smoothed: number | null;
}

const DEFAULTS: IChartOptions = {
  xLabel: 'step',
  xFormat: 'number',
  logY: false,
  smoothing: 0,
  height: 220,
  xChoices: [],
  xAxis: '',
  runs: false
};

interface IShown {
  meta: ISeriesMeta;
  line: Line | null;
  /** uPlot series indexes drawn for this meta (line, then raw or band edges). */
  cols: number[];
  dense: boolean;
}

/** The min..max band of one bucketed series (painted under the lines). */
interface IBand {
  label: string;
  x: Float64Array;
  lo: Float64Array;
  hi: Float64Array;
  fill: string;
}

interface IPanel {
  name: string;
  node: HTMLDivElement;
  host: HTMLDivElement;
  legend: HTMLDivElement;
  note: HTMLDivElement;
  tip: HTMLDivElement;
  plot: uPlot | null;
  signature: string;
  shown: IShown[];
  /** Drawn from buckets (their edges follow the x range and the width). */
  bucketed: boolean;
  bands: IBand[];
  dirty: boolean;
}

const live = new Set<ChartGrid>();
let syncCount = 0;
let themeWatch: MutationObserver | null = null;

/** Redraw every chart with the current theme's colours. */
export function restyleCharts(): void {
  for (const chart of live) {
    chart.restyle();
  }
}

function watchTheme(): void {
  // JupyterLab marks the theme on <body>: follow a switch without a reload.
  if (themeWatch || typeof MutationObserver === 'undefined' || !document.body) {
    return;
  }
  themeWatch = new MutationObserver(() => restyleCharts());
  themeWatch.observe(document.body, {
    attributes: true,
    attributeFilter: ['data-jp-theme-light', 'data-jp-theme-name']
  });
}

function injectStyle(id: string, css: string): void {
  if (!document.getElementById(id)) {
    const style = document.createElement('style');
    style.id = id;
    style.textContent = css;
    document.head.appendChild(style);
  }
}

/** Put the chart's stylesheet in the document (once). */
export function ensureChartStyle(): void {
  injectStyle('jupyter-ext-chart-style', CHART_CSS);
}

function cssVar(el: Element, name: string, fallback: string): string {
  const value = getComputedStyle(el).getPropertyValue(name).trim();
  return value || fallback;
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/**
 * Small multiples of line series. Feed it with `append`/`replace` (or the kernel's
 * messages through `store.apply` then `invalidate`), declare series with `setSeries`.
 *
 *     const chart = new ChartGrid({ xLabel: 'step' });
 *     host.append(chart.node);
 *     chart.setSeries([{ id: 'a/loss', panel: 'loss', label: 'run a', color: '#1f77b4' }]);
 *     chart.append('a/loss', [0, 1, 2], [1.0, 0.7, 0.5]);
 */
export class ChartGrid {
  /** `.jupyter-ext-chart`, with `data-points` (points held, all series). */
  readonly node: HTMLDivElement;
  readonly store = new SeriesStore();
  /** Called when a person changes an option in the toolbar (the owner may persist it). */
  onOptionChange: ((name: keyof IChartOptions, value: unknown) => void) | null = null;

  constructor(
    options: Partial<IChartOptions> & { toolbar?: boolean; panelClass?: string } = {}
  ) {
    const { toolbar = true, panelClass = '', ...rest } = options;
    this._options = { ...DEFAULTS, ...rest };
    this._panelClass = panelClass;
    this._syncKey = `jupyter-ext-chart-${++syncCount}`;
    ensureChartStyle();
    watchTheme();
    this.node = el('div', 'jupyter-ext-chart');
    this.node.dataset.points = '0';
    this._toolbar = el('div', 'jxc-toolbar');
    this._grid = el('div', 'jxc-grid');
    this.node.append(this._toolbar, this._grid);
    this._wantToolbar = toolbar;
    this._toolbar.hidden = true; // shown once there is a series to act on
    this._buildToolbar();
    this._resize = new ResizeObserver(() => this._onResize());
    this._resize.observe(this._grid);
    live.add(this);
  }

  get options(): Readonly<IChartOptions> {
    return this._options;
  }

  /** Whether the x axis is zoomed in (a double-click or `resetZoom` undoes it). */
  get zoomed(): [number, number] | null {
    return this._zoom;
  }

  // -- what is shown -----------------------------------------------------------------
  /** Order of the panels; panels of declared series not listed here follow. */
  setPanels(order: string[]): void {
    this._order = [...order];
    this._dirtyAll();
  }

  /** Declare every series (id, panel, label, colour); points stay with their ids. */
  setSeries(metas: ISeriesMeta[]): void {
    const key = JSON.stringify(metas.map(m => [m.id, m.panel, m.label, m.color, m.nonfinite]));
    if (key === this._metaKey) {
      return; // owners re-declare on every poll: nothing to redraw
    }
    this._metaKey = key;
    this._metas = metas.map(m => ({ ...m }));
    const known = new Set(this._metas.map(m => m.id));
    for (const id of Array.from(this.store.lines.keys())) {
      if (!known.has(id)) {
        this.store.remove(id);
      }
    }
    this._dirtyAll();
    this._updateToolbar();
  }

  setNotes(notes: Record<string, string>): void {
    this._notes = { ...notes };
    this.scheduleDraw();
  }

  setOptions(options: Partial<IChartOptions>): void {
    const before = this._options;
    this._options = { ...before, ...options };
    const rebuild =
      before.logY !== this._options.logY ||
      before.xFormat !== this._options.xFormat ||
      before.xLabel !== this._options.xLabel ||
      before.height !== this._options.height ||
      before.smoothing !== this._options.smoothing;
    if (before.xFormat !== this._options.xFormat || before.xAxis !== this._options.xAxis) {
      this._zoom = null; // a zoom in steps means nothing in seconds
    }
    if (rebuild) {
      this._dirtyAll();
    }
    this._updateToolbar();
  }

  // -- points ------------------------------------------------------------------------
  append(id: string, xs: ArrayLike<number | null>, ys: ArrayLike<number | null>): void {
    this.store.append(id, xs, ys);
    this.invalidate([id]);
  }

  replace(id: string, xs: ArrayLike<number | null>, ys: ArrayLike<number | null>): void {
    this.store.replace(id, xs, ys);
    this.invalidate([id]);
  }

  clear(): void {
    this.store.clear();
    this.invalidate();
  }

  /** The points of these series changed (all series when none are named). */
  invalidate(ids?: Iterable<string>): void {
    if (ids === undefined) {
      this._dirtyAll();
      return;
    }
    const panels = new Set<string>();
    for (const id of ids) {
      const meta = this._metas.find(m => m.id === id);
      if (meta) {
        panels.add(meta.panel);
      }
    }
    for (const name of panels) {
      const p = this._panels.get(name);
      if (p) {
        p.dirty = true;
      }
    }
    // A new point can move the shared x range: every panel then follows.
    this._rangeStale = true;
    this.scheduleDraw();
  }

  // -- zoom --------------------------------------------------------------------------
  /** Show x in [x0, x1] on every panel. */
  zoom(x0: number, x1: number): void {
    if (!(x1 > x0)) {
      return;
    }
    this._zoom = [x0, x1];
    this._dirtyAll();
    this._updateToolbar();
  }

  /** Back to the whole x range. */
  resetZoom(): void {
    this._zoom = null;
    this._dirtyAll();
    this._updateToolbar();
  }

  /** Zoom to the x range every shown series covers (the shortest run sets the end). */
  alignShortest(): void {
    const full = this._fullRange();
    if (!full) {
      return;
    }
    let end = Infinity;
    for (const m of this._metas) {
      const line = this.store.get(m.id);
      if (line && line.n && !this._hidden.has(m.label)) {
        line.ensureSorted();
        end = Math.min(end, line.x[line.n - 1]);
      }
    }
    if (Number.isFinite(end) && end > full[0]) {
      this.zoom(full[0], end);
    }
  }

  /** Hide or show every series with this label (a run, in a comparison), on all panels. */
  toggleLabel(label: string, show?: boolean): void {
    const hide = show === undefined ? !this._hidden.has(label) : !show;
    if (hide) {
      this._hidden.add(label);
    } else {
      this._hidden.delete(label);
    }
    for (const p of this._panels.values()) {
      for (const s of p.shown) {
        if (s.meta.label === label) {
          for (const c of s.cols) {
            p.plot?.setSeries(c, { show: !hide });
          }
        }
      }
      this._renderLegend(p);
    }
  }

  /** Labels hidden through the legend. */
  get hidden(): string[] {
    return Array.from(this._hidden);
  }

  // -- reading -----------------------------------------------------------------------
  /**
   * Each series of a panel at the point nearest `x`: the value the run logged there
   * (raw) and, with smoothing on, the smoothed value. What the hover readout shows.
   */
  readout(panel: string, x: number): IReading[] {
    const rows: IReading[] = [];
    for (const meta of this._metas) {
      if (meta.panel !== panel || this._hidden.has(meta.label)) {
        continue;
      }
      const line = this.store.get(meta.id);
      const i = line ? line.nearest(x) : -1;
      if (!line || i < 0) {
        continue;
      }
      const w = this._options.smoothing;
      const smooth = w > 0 ? this._smoothed(meta.id, line, w)[i] : null;
      rows.push({
        id: meta.id,
        label: meta.label,
        color: meta.color,
        x: line.x[i],
        raw: line.y[i],
        smoothed: smooth
      });
    }
    return rows;
  }

  /** The uPlot instance of a panel (tests and benchmarks read its state). */
  plotOf(panel: string): uPlot | null {
    return this._panels.get(panel)?.plot ?? null;
  }

  // -- drawing -----------------------------------------------------------------------
  scheduleDraw(): void {
    if (this._frame === 0 && !this._disposed) {
      this._frame = requestAnimationFrame(() => {
        this._frame = 0;
        this.draw();
      });
    }
  }

  /** Draw now what changed (normally done once per animation frame). */
  draw(): void {
    if (this._disposed) {
      return;
    }
    this._layout();
    if (this._rangeStale) {
      this._rangeStale = false;
      const full = this._fullRange();
      const moved = !sameRange(full, this._full);
      this._full = full;
      if (moved) {
        for (const p of this._panels.values()) {
          // Buckets follow the range; plain lines only need the new scale.
          if (p.bucketed || !p.plot) {
            p.dirty = true;
          } else if (!p.dirty) {
            this._applyScale(p);
          }
        }
      }
    }
    for (const p of this._panels.values()) {
      if (p.dirty) {
        this._drawPanel(p);
      }
      this._renderNote(p);
    }
    this.node.dataset.points = String(this.store.points);
  }

  /** Rebuild with the current theme's colours. */
  restyle(): void {
    for (const p of this._panels.values()) {
      this._destroyPlot(p);
    }
    this._dirtyAll();
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    live.delete(this);
    if (this._frame) {
      cancelAnimationFrame(this._frame);
    }
    this._resize.disconnect();
    for (const p of this._panels.values()) {
      this._destroyPlot(p);
    }
  }

  private _dirtyAll(): void {
    for (const p of this._panels.values()) {
      p.dirty = true;
    }
    this._rangeStale = true;
    this.scheduleDraw();
  }

  private _panelOrder(): string[] {
    const order = [...this._order];
    for (const m of this._metas) {
      if (!order.includes(m.panel)) {
        order.push(m.panel);
      }
    }
    return order;
  }

  private _layout(): void {
    const order = this._panelOrder();
    for (const [name, p] of this._panels) {
      if (!order.includes(name)) {
        this._destroyPlot(p);
        p.node.remove();
        this._panels.delete(name);
      }
    }
    order.forEach((name, i) => {
      let p = this._panels.get(name);
      if (!p) {
        p = this._makePanel(name);
        this._panels.set(name, p);
      }
      if (this._grid.children[i] !== p.node) {
        this._grid.insertBefore(p.node, this._grid.children[i] ?? null);
      }
    });
  }

  private _makePanel(name: string): IPanel {
    const node = el('div', `jxc-panel ${this._panelClass}`.trim());
    node.dataset.panel = name;
    node.dataset.points = '0';
    const title = el('div', 'jxc-title', name);
    const host = el('div', 'jxc-plot');
    const legend = el('div', 'jxc-legend');
    const note = el('div', 'jxc-note');
    const tip = el('div', 'jxc-tip');
    node.append(title, host, legend, note, tip);
    const p: IPanel = {
      name,
      node,
      host,
      legend,
      note,
      tip,
      plot: null,
      signature: '',
      shown: [],
      bucketed: false,
      bands: [],
      dirty: true
    };
    host.addEventListener('mouseenter', () => (this._hovered = p));
    host.addEventListener('mouseleave', () => {
      if (this._hovered === p) {
        this._hovered = null;
      }
      tip.style.display = 'none';
    });
    host.addEventListener('dblclick', () => this.resetZoom());
    return p;
  }

  private _fullRange(): [number, number] | null {
    let lo = Infinity;
    let hi = -Infinity;
    for (const m of this._metas) {
      const line = this.store.get(m.id);
      if (!line || !line.n) {
        continue;
      }
      line.ensureSorted();
      lo = Math.min(lo, line.x[0]);
      hi = Math.max(hi, line.x[line.n - 1]);
    }
    return hi >= lo ? [lo, hi] : null;
  }

  private _xRange(): [number, number] {
    const r = this._zoom ?? this._full;
    if (!r) {
      return [0, 1];
    }
    let [a, b] = r;
    if (a === b) {
      const d = Math.abs(a) * 0.05 || 1;
      a -= d;
      b += d;
    }
    return [a, b];
  }

  private _applyScale(p: IPanel): void {
    const [min, max] = this._xRange();
    p.plot?.setScale('x', { min, max });
  }

  /** The smoothed values of a line; a live line's new points continue the last EMA. */
  private _smoothed(id: string, line: Line, weight: number): Float64Array {
    let hit = this._smooth.get(id);
    const fresh =
      !hit || hit.line !== line || hit.resets !== line.resets || hit.weight !== weight;
    if (fresh || !hit) {
      hit = { line, resets: line.resets, weight, n: 0, state: { acc: 0, norm: 0 }, values: new Float64Array(Math.max(16, line.n)) };
      this._smooth.set(id, hit);
    }
    if (hit.n < line.n) {
      if (hit.values.length < line.n) {
        const grown = new Float64Array(Math.max(line.n, 2 * hit.values.length));
        grown.set(hit.values.subarray(0, hit.n));
        hit.values = grown;
      }
      emaInto(line.y, hit.n, line.n, weight, hit.state, hit.values);
      hit.n = line.n;
    }
    return hit.values;
  }

  /** Per-bucket summary of a line on `grid`, adding only the points new since last time. */
  private _bucketed(id: string, line: Line, smooth: Float64Array | null, grid: ReturnType<typeof gridFor>, weight: number) {
    let hit = this._acc.get(id);
    if (
      !hit ||
      hit.line !== line ||
      hit.resets !== line.resets ||
      hit.weight !== weight ||
      !hit.acc.fits(grid) ||
      hit.acc.done > line.n
    ) {
      hit = { line, resets: line.resets, weight, acc: new BucketAccumulator(grid) };
      this._acc.set(id, hit);
    }
    hit.acc.add(line.x, line.y, smooth ?? line.y, hit.acc.done, line.n, grid);
    return hit.acc;
  }

  private _width(p: IPanel): number {
    if (this._hostWidth > 0 && !p.plot) {
      // The first draw: the panel's width from the host's, measured before our DOM went
      // in (no forced layout of it); the ResizeObserver corrects a wrong guess.
      const cols = Math.max(1, Math.min(this._panels.size, Math.floor((this._hostWidth + 14) / (320 + 14))));
      return Math.floor((this._hostWidth - 14 * (cols - 1)) / cols) - this._panelPadding;
    }
    return Math.floor(p.host.clientWidth || this._grid.clientWidth || 0);
  }

  /**
   * The width the chart will get (its container's, read before the chart is put in it):
   * the first draw then needs no layout of the chart's own DOM.
   */
  setHostWidth(width: number, panelPadding = 0): void {
    this._hostWidth = Math.max(0, Math.floor(width));
    this._panelPadding = panelPadding;
  }

  private _drawPanel(p: IPanel): void {
    const width = this._width(p);
    if (width < 40) {
      return; // hidden: drawn when it gets a size (ResizeObserver)
    }
    p.dirty = false;
    const metas = this._metas.filter(m => m.panel === p.name);
    const weight = this._options.smoothing;
    const full = this._full;
    const view = this._zoom ?? full;
    // About a bucket per three pixels of the visible window, over the whole range (a
    // power-of-two bucket width makes that 1.5 to 3 pixels): a band reads the same as at
    // one per pixel, with a third of the vertices to draw on each refresh.
    const factor = full && view ? (full[1] - full[0]) / Math.max(1e-300, view[1] - view[0]) : 1;
    const buckets = Math.max(32, Math.min(1 << 21, Math.round((width / 3) * factor)));
    const parts: IPart[] = [];
    const shown: IShown[] = [];
    const series: uPlot.Series[] = [{ label: this._options.xLabel }];
    const bands: IBand[] = [];
    const entries: { meta: ISeriesMeta; line: Line; smooth: Float64Array | null }[] = [];
    let points = 0;
    for (const meta of metas) {
      const line = this.store.get(meta.id) ?? null;
      if (!line || line.n === 0 || !full) {
        shown.push({ meta, line, cols: [], dense: false });
        continue;
      }
      line.ensureSorted();
      points += line.n;
      const smooth = weight > 0 ? this._smoothed(meta.id, line, weight) : null;
      entries.push({ meta, line, smooth });
    }
    // Exact points when they are few, or when every series has the same x (runs logged at
    // the same steps); otherwise every series is summarised on one grid of about a bucket
    // per pixel, so ten runs with different x never make a table of their union.
    const first = entries[0]?.line;
    const shared = entries.every(e => sameX(first.x, first.n, e.line.x, e.line.n));
    const exact = shared ? (entries[0]?.line.n ?? 0) <= 2 * buckets : points <= 2 * buckets;
    const grid = exact || !full ? null : gridFor(full[0], full[1], buckets);
    const centres = grid ? gridCentres(grid) : null;
    let col = 1;
    for (const { meta, line, smooth } of entries) {
      const show = !this._hidden.has(meta.label);
      const main: uPlot.Series = {
        label: meta.label,
        stroke: meta.color,
        width: 1.5,
        show,
        points: exact ? { fill: meta.color, size: 5 } : { show: false }
      };
      const faint: uPlot.Series = {
        label: `${meta.label} raw`,
        stroke: withAlpha(meta.color, 0.3),
        width: 1,
        show,
        points: { show: false }
      };
      if (centres && full) {
        const b = this._bucketed(meta.id, line, smooth, grid!, weight).summary(
          grid!.count,
          centres
        );
        const band = b.maxCount > 1;
        const columns: ArrayLike<number>[] = [b.mid];
        series.push(main);
        const cols = [col];
        if (band) {
          // Several points share a pixel: a band spans their min..max, so spikes stay
          // visible (painted by _paintBands under the lines: no uPlot series of its own).
          bands.push({ label: meta.label, x: centres, lo: b.lo, hi: b.hi, fill: withAlpha(meta.color, 0.2) });
        } else if (smooth) {
          columns.push(b.rawMid);
          series.push(faint);
          cols.push(col + 1);
        }
        parts.push({ x: centres, n: grid!.count, columns, count: b.count, bad: b.bad });
        shown.push({ meta, line, cols, dense: band });
        col += cols.length;
      } else if (smooth) {
        parts.push({ x: line.x, n: line.n, columns: [smooth, line.y] });
        series.push(main, faint);
        shown.push({ meta, line, cols: [col, col + 1], dense: false });
        col += 2;
      } else {
        parts.push({ x: line.x, n: line.n, columns: [line.y] });
        series.push(main);
        shown.push({ meta, line, cols: [col], dense: false });
        col += 1;
      }
    }
    p.bucketed = centres !== null;
    p.bands = bands;
    p.shown = shown;
    p.node.dataset.points = String(points);
    const data = align(parts, this._options.logY) as uPlot.AlignedData;
    const intX = this._intX();
    const signature = JSON.stringify([
      series.map(s => [s.label, s.stroke, s.width]),
      bands.length > 0,
      this._options.logY,
      this._options.xFormat,
      this._options.xLabel,
      this._options.height,
      intX
    ]);
    if (p.plot && p.signature === signature) {
      p.plot.batch(() => {
        p.plot!.setData(data, false);
        this._applyScale(p);
      });
    } else {
      this._destroyPlot(p);
      p.signature = signature;
      p.plot = new uPlot(this._plotOptions(p, width, series, intX), data, p.host);
    }
    this._renderLegend(p);
  }

  /** Whether every x is a whole number (steps and epochs): then ticks are too. */
  private _intX(): boolean {
    if (this._options.xFormat !== 'number') {
      return false;
    }
    for (const m of this._metas) {
      const line = this.store.get(m.id);
      if (!line) {
        continue;
      }
      const step = Math.max(1, Math.floor(line.n / 64));
      for (let i = 0; i < line.n; i += step) {
        if (!Number.isInteger(line.x[i])) {
          return false;
        }
      }
    }
    return true;
  }

  private _plotOptions(
    p: IPanel,
    width: number,
    series: uPlot.Series[],
    intX: boolean
  ): uPlot.Options {
    const ink = cssVar(this.node, '--jp-ui-font-color2', '#666');
    const grid = cssVar(this.node, '--jp-border-color2', '#ddd');
    const family = cssVar(this.node, '--jp-ui-font-family', 'sans-serif');
    const font = `11px ${family}`;
    const { xFormat, logY, height, xLabel } = this._options;
    const axis: uPlot.Axis = {
      stroke: ink,
      grid: { stroke: grid, width: 1 },
      ticks: { stroke: grid, width: 1 },
      font,
      labelFont: font
    };
    const xAxis: uPlot.Axis = { ...axis, label: xLabel, labelSize: 16, size: 36 };
    if (xFormat === 'duration') {
      xAxis.incrs = DURATION_INCRS;
      xAxis.values = (_u, splits) => splits.map(v => fmtDuration(v));
    } else if (xFormat === 'number') {
      if (intX) {
        xAxis.incrs = INTEGER_INCRS;
      }
      xAxis.values = (_u, splits) => splits.map(v => fmtNum(v));
    }
    return {
      width,
      height,
      series,
      legend: { show: false },
      scales: {
        x: { time: xFormat === 'time', range: () => this._xRange() },
        y: {
          distr: logY ? 3 : 1,
          range: (u, min, max) => this._yRange(p, u, min, max)
        }
      },
      axes: [xAxis, { ...axis, size: 58, values: (_u, splits) => splits.map(v => fmtNum(v)) }],
      cursor: {
        sync: { key: this._syncKey },
        y: false, // a horizontal line means nothing on the other panels' scales
        drag: { x: true, y: false, setScale: false },
        // A double-click resets the zoom of every panel (ours), not of one plot (uPlot's).
        bind: { dblclick: () => () => null },
        points: { size: 7 }
      },
      hooks: {
        setSelect: [
          u => {
            if (u.select.width > 3) {
              const a = u.posToVal(u.select.left, 'x');
              const b = u.posToVal(u.select.left + u.select.width, 'x');
              this.zoom(Math.min(a, b), Math.max(a, b));
            }
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          }
        ],
        setCursor: [u => this._onCursor(p, u)],
        drawAxes: [u => this._paintBands(p, u)],
        // The x range shown, on the panel's node: what tests and screen readers can read.
        setScale: [
          (u, key) => {
            if (key === 'x') {
              p.node.dataset.xMin = String(u.scales.x.min);
              p.node.dataset.xMax = String(u.scales.x.max);
            }
          }
        ]
      }
    };
  }

  /** Visible bands, on the x window shown: [first, last] bucket index, or null. */
  private _bandWindow(band: IBand, u: uPlot): [number, number] | null {
    const { min, max } = u.scales.x;
    const n = band.x.length;
    if (n === 0 || min === undefined || max === undefined) {
      return null;
    }
    const step = n > 1 ? band.x[1] - band.x[0] : 1;
    const first = Math.max(0, Math.floor((min - band.x[0]) / step) - 1);
    const last = Math.min(n - 1, Math.ceil((max - band.x[0]) / step) + 1);
    return first <= last ? [first, last] : null;
  }

  /** y range of the lines and of the bands (a spike in a band must fit on the plot). */
  private _yRange(p: IPanel, u: uPlot, min: number, max: number): uPlot.Range.MinMax {
    const logY = this._options.logY;
    let lo = min ?? Infinity;
    let hi = max ?? -Infinity;
    for (const band of p.bands) {
      const window = this._hidden.has(band.label) ? null : this._bandWindow(band, u);
      for (let i = window ? window[0] : 1; window && i <= window[1]; i++) {
        const a = band.lo[i];
        const b = band.hi[i];
        if (a < lo && (!logY || a > 0)) {
          lo = a;
        }
        if (b > hi) {
          hi = b;
        }
      }
    }
    if (!(hi >= lo)) {
      return logY ? [1, 10] : [0, 1];
    }
    return logY ? uPlot.rangeLog(lo, hi, 10, false) : uPlot.rangeNum(lo, hi, 0.1, true);
  }

  /** Fill each band between its min and max edges, under the lines, gaps left open. */
  private _paintBands(p: IPanel, u: uPlot): void {
    if (p.bands.length === 0) {
      return;
    }
    const ctx = u.ctx;
    const logY = this._options.logY;
    const { left, top, width, height } = u.bbox;
    // Linear axes map by hand (valToPos per vertex is most of the cost); log uses uPlot.
    const xs = u.scales.x;
    const ys = u.scales.y;
    const kx = width / ((xs.max ?? 1) - (xs.min ?? 0) || 1);
    const ky = height / ((ys.max ?? 1) - (ys.min ?? 0) || 1);
    const px = (v: number): number => left + (v - (xs.min ?? 0)) * kx;
    const py = logY
      ? (v: number): number => u.valToPos(v, 'y', true)
      : (v: number): number => top + height - (v - (ys.min ?? 0)) * ky;
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top, width, height);
    ctx.clip();
    for (const band of p.bands) {
      const window = this._hidden.has(band.label) ? null : this._bandWindow(band, u);
      if (!window) {
        continue;
      }
      ctx.fillStyle = band.fill;
      ctx.beginPath();
      let start = -1;
      const close = (end: number): void => {
        // Back along the min edge to where this run of buckets started.
        for (let j = end; j >= start; j--) {
          ctx.lineTo(px(band.x[j]), py(band.lo[j]));
        }
        ctx.closePath();
        start = -1;
      };
      for (let i = window[0]; i <= window[1]; i++) {
        const ok = band.hi[i] === band.hi[i] && (!logY || band.lo[i] > 0);
        if (!ok) {
          if (start >= 0) {
            close(i - 1);
          }
          continue;
        }
        const x = px(band.x[i]);
        const y = py(band.hi[i]);
        if (start < 0) {
          start = i;
          ctx.moveTo(x, y);
        } else {
          ctx.lineTo(x, y);
        }
      }
      if (start >= 0) {
        close(window[1]);
      }
      ctx.fill();
    }
    ctx.restore();
  }

  private _onCursor(p: IPanel, u: uPlot): void {
    const left = u.cursor.left ?? -1;
    if (left < 0 || this._full === null) {
      p.tip.style.display = 'none';
      for (const v of Array.from(p.legend.querySelectorAll<HTMLElement>('.jxc-value'))) {
        v.textContent = '';
      }
      return;
    }
    const x = u.posToVal(left, 'x');
    const rows = this.readout(p.name, x);
    const values = new Map(rows.map(r => [r.id, r]));
    for (const item of Array.from(p.legend.querySelectorAll<HTMLElement>('.jxc-item'))) {
      const r = values.get(item.dataset.series ?? '');
      const v = item.querySelector('.jxc-value');
      if (v) {
        v.textContent = r ? ` ${fmtNum(r.smoothed ?? r.raw)}` : '';
      }
    }
    if (this._hovered !== p || rows.length === 0) {
      p.tip.style.display = 'none';
      return;
    }
    const { xFormat, xLabel } = this._options;
    const at = rows[0].x;
    const lines = rows.map(r => {
      const value =
        r.smoothed === null
          ? fmtNum(r.raw)
          : `${fmtNum(r.smoothed)} <span class="jxc-raw">(raw ${fmtNum(r.raw)})</span>`;
      const where = r.x !== at ? ` <span class="jxc-raw">@ ${fmtX(r.x, xFormat)}</span>` : '';
      return (
        `<div class="jxc-row" data-series="${escapeHtml(r.id)}" data-x="${r.x}" data-raw="${r.raw}">` +
        `<span class="jxc-swatch" style="background:${escapeHtml(r.color)}"></span>` +
        `${escapeHtml(r.label)}: <b>${value}</b>${where}</div>`
      );
    });
    p.tip.innerHTML =
      `<div class="jxc-tip-head">${escapeHtml(xLabel)} ${fmtX(at, xFormat)}</div>` +
      lines.join('');
    p.tip.style.display = 'block';
    const hostLeft = p.host.offsetLeft + u.over.offsetLeft;
    const top = p.host.offsetTop + u.over.offsetTop + (u.cursor.top ?? 0);
    const room = p.node.clientWidth - p.tip.offsetWidth - 4;
    p.tip.style.left = `${Math.max(0, Math.min(hostLeft + left + 14, room))}px`;
    p.tip.style.top = `${top + 14}px`;
  }

  private _renderLegend(p: IPanel): void {
    const metas = this._metas.filter(m => m.panel === p.name);
    const key = JSON.stringify([metas.map(m => [m.id, m.label, m.color]), this.hidden]);
    if (p.legend.dataset.key === key) {
      return;
    }
    p.legend.dataset.key = key;
    p.legend.replaceChildren(
      ...metas.map(m => {
        const item = el('span', 'jxc-item');
        item.dataset.series = m.id;
        item.classList.toggle('jxc-off', this._hidden.has(m.label));
        item.title = `${m.label}: click to hide or show (on every panel)`;
        const swatch = el('span', 'jxc-swatch');
        swatch.style.background = m.color;
        item.append(swatch, el('span', 'jxc-label', m.label), el('span', 'jxc-value'));
        item.addEventListener('click', () => this.toggleLabel(m.label));
        return item;
      })
    );
  }

  /** Values <= 0 of a line (not drawn on a log axis), counted once per change of it. */
  private _nonPositive(id: string, line: Line): number {
    const hit = this._nonpos.get(id);
    if (hit && hit.line === line && hit.version === line.version) {
      return hit.count;
    }
    let count = 0;
    for (let i = 0; i < line.n; i++) {
      if (line.y[i] <= 0) {
        count++;
      }
    }
    this._nonpos.set(id, { line, version: line.version, count });
    return count;
  }

  private _renderNote(p: IPanel): void {
    const metas = this._metas.filter(m => m.panel === p.name);
    const parts: string[] = [];
    const bad = metas.reduce((a, m) => a + (m.nonfinite ?? 0), 0);
    if (bad) {
      parts.push(`${bad} non-finite value${bad > 1 ? 's' : ''} (NaN/inf) not drawn`);
    }
    if (this._options.logY) {
      let nonpositive = 0;
      for (const m of metas) {
        const line = this.store.get(m.id);
        if (line) {
          nonpositive += this._nonPositive(m.id, line);
        }
      }
      if (nonpositive) {
        parts.push(`${nonpositive} value${nonpositive > 1 ? 's' : ''} <= 0 not drawn on a log axis`);
      }
    }
    if (p.bands.length) {
      parts.push('dense: line = mean per pixel, band = min..max');
    }
    if (this._notes[p.name]) {
      parts.push(this._notes[p.name]);
    }
    const text = parts.join(' · ');
    if (p.note.textContent !== text) {
      p.note.textContent = text;
    }
    const empty = p.shown.every(s => !s.line || !s.line.n);
    p.node.classList.toggle('jxc-empty', empty);
  }

  private _buildToolbar(): void {
    const xSelect = el('select', 'jxc-x');
    xSelect.title = 'x axis';
    xSelect.addEventListener('change', () => this._set('xAxis', xSelect.value));
    const logBox = el('input', 'jxc-log');
    logBox.type = 'checkbox';
    logBox.addEventListener('change', () => this._set('logY', logBox.checked));
    const logLabel = el('label', 'jxc-control');
    logLabel.append(logBox, document.createTextNode(' log y'));
    const smooth = el('input', 'jxc-smooth');
    smooth.type = 'range';
    smooth.min = '0';
    smooth.max = '0.99';
    smooth.step = '0.01';
    const smoothValue = el('span', 'jxc-smooth-value');
    // Redraw while dragging; tell the owner once, when the slider is let go.
    smooth.addEventListener('input', () => {
      this.setOptions({ smoothing: Number(smooth.value) });
    });
    smooth.addEventListener('change', () => this._set('smoothing', Number(smooth.value)));
    const smoothLabel = el('label', 'jxc-control', 'smoothing ');
    smoothLabel.append(smooth, smoothValue);
    const shortest = el('button', 'jxc-button jxc-shortest', 'align to shortest');
    shortest.title = 'Zoom the x axis to the range every shown run covers';
    shortest.addEventListener('click', () => this.alignShortest());
    const reset = el('button', 'jxc-button jxc-reset', 'reset zoom');
    reset.addEventListener('click', () => this.resetZoom());
    const hint = el('span', 'jxc-hint', 'drag to zoom · double-click to reset');
    this._toolbar.append(xSelect, logLabel, smoothLabel, shortest, reset, hint);
    this._controls = { xSelect, logBox, smooth, smoothValue, shortest, reset };
    this._updateToolbar();
  }

  private _set(name: keyof IChartOptions, value: unknown): void {
    this.setOptions({ [name]: value } as Partial<IChartOptions>);
    this.onOptionChange?.(name, value);
  }

  private _updateToolbar(): void {
    const c = this._controls;
    if (!c) {
      return;
    }
    const o = this._options;
    const choices = o.xChoices;
    const signature = JSON.stringify(choices);
    if (c.xSelect.dataset.choices !== signature) {
      c.xSelect.dataset.choices = signature;
      c.xSelect.replaceChildren(
        ...choices.map(([key, label]) => {
          const option = el('option', '', label);
          option.value = key;
          return option;
        })
      );
    }
    c.xSelect.hidden = choices.length < 2;
    if (c.xSelect.value !== o.xAxis && choices.some(([k]) => k === o.xAxis)) {
      c.xSelect.value = o.xAxis;
    }
    c.logBox.checked = o.logY;
    if (Number(c.smooth.value) !== o.smoothing) {
      c.smooth.value = String(o.smoothing);
    }
    c.smoothValue.textContent = o.smoothing.toFixed(2);
    c.shortest.hidden = !o.runs || new Set(this._metas.map(m => m.label)).size < 2;
    c.reset.hidden = this._zoom === null;
    // A failed run with no metrics gets no controls over an empty chart.
    this._toolbar.hidden = !this._wantToolbar || this._metas.length === 0;
  }

  private _onResize(): void {
    for (const p of this._panels.values()) {
      const width = this._width(p);
      if (p.plot && width >= 40 && width !== p.plot.width) {
        // A new width changes the buckets: redraw those panels.
        if (p.bucketed) {
          p.dirty = true;
        } else {
          p.plot.setSize({ width, height: this._options.height });
        }
      } else if (!p.plot) {
        p.dirty = true;
      }
    }
    this.scheduleDraw();
  }

  private _destroyPlot(p: IPanel): void {
    if (p.plot) {
      p.plot.destroy();
      p.plot = null;
      p.signature = '';
    }
    p.dirty = true;
  }

  private _options: IChartOptions;
  private _panelClass: string;
  private _wantToolbar = true;
  private _syncKey: string;
  private _toolbar: HTMLDivElement;
  private _grid: HTMLDivElement;
  private _resize: ResizeObserver;
  private _controls: {
    xSelect: HTMLSelectElement;
    logBox: HTMLInputElement;
    smooth: HTMLInputElement;
    smoothValue: HTMLSpanElement;
    shortest: HTMLButtonElement;
    reset: HTMLButtonElement;
  } | null = null;
  private _panels = new Map<string, IPanel>();
  private _hostWidth = 0;
  private _panelPadding = 0;
  private _order: string[] = [];
  private _metas: ISeriesMeta[] = [];
  private _metaKey = '';
  private _notes: Record<string, string> = {};
  private _hidden = new Set<string>();
  private _zoom: [number, number] | null = null;
  private _full: [number, number] | null = null;
  private _rangeStale = true;
  private _hovered: IPanel | null = null;
  private _smooth = new Map<
    string,
    {
      line: Line;
      resets: number;
      weight: number;
      n: number;
      state: IEmaState;
      values: Float64Array;
    }
  >();
  private _nonpos = new Map<string, { line: Line; version: number; count: number }>();
  private _acc = new Map<
    string,
    { line: Line; resets: number; weight: number; acc: BucketAccumulator }
  >();
  private _frame = 0;
  private _disposed = false;
}

function sameRange(a: [number, number] | null, b: [number, number] | null): boolean {
  return a === b || (a !== null && b !== null && a[0] === b[0] && a[1] === b[1]);
}
