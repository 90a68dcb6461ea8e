// The lab panels' charts: uPlot draws; we keep the points and the theme.
//
// A LineChart holds named series of (x, y) points, appended as they arrive, and redraws
// at most once per animation frame. Series with different x values share one chart
// (uPlot.join aligns them; the gaps that alignment creates are bridged, a real null
// value, i.e. a non-finite metric, stays a gap).

import uPlot from 'uplot';

/** matplotlib's "tab10", as jupyter_ext.widgets.chart.PALETTE: the notebook's colours. */
export const PALETTE = [
  '#1f77b4',
  '#ff7f0e',
  '#2ca02c',
  '#d62728',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#7f7f7f',
  '#bcbd22',
  '#17becf'
];

export function paletteColor(i: number): string {
  return PALETTE[((i % PALETTE.length) + PALETTE.length) % PALETTE.length];
}

export interface ISeriesSpec {
  id: string;
  label: string;
  color: string;
}

interface ISeriesData extends ISeriesSpec {
  xs: number[];
  ys: (number | null)[];
  sorted: boolean;
}

const live = new Set<LineChart>();

const INTEGER_INCRS = Array.from({ length: 30 }, (_, i) => [1, 2, 5][i % 3] * 10 ** Math.floor(i / 3));

/** Redraw every chart with the current theme's colours (call on a theme change). */
export function restyleCharts(): void {
  for (const chart of live) {
    chart.restyle();
  }
}

function cssVar(name: string, fallback: string): string {
  const value = getComputedStyle(document.body).getPropertyValue(name).trim();
  return value || fallback;
}

export class LineChart {
  /** `.jpe-chart`, with `data-panel` and `data-points` (points drawn, all series). */
  readonly node: HTMLDivElement;

  constructor(options: { title: string; panel?: string; height?: number; xLabel?: string }) {
    this._height = options.height ?? 200;
    this._xLabel = options.xLabel ?? 'step';
    this.node = document.createElement('div');
    this.node.className = 'jpe-chart';
    this.node.dataset.panel = options.panel ?? options.title;
    this.node.dataset.points = '0';
    const title = document.createElement('div');
    title.className = 'jpe-chart-title';
    title.textContent = options.title;
    this._plotHost = document.createElement('div');
    this._plotHost.className = 'jpe-chart-plot';
    this.node.append(title, this._plotHost);
    this._resize = new ResizeObserver(() => this._onResize());
    this._resize.observe(this.node);
    live.add(this);
  }

  /** The series, in legend order. A new or changed series rebuilds the plot. */
  setSeries(specs: ISeriesSpec[]): void {
    const next = new Map<string, ISeriesData>();
    let changed = specs.length !== this._series.size;
    specs.forEach((spec, i) => {
      const old = this._series.get(spec.id);
      const same = old && old.label === spec.label && old.color === spec.color;
      if (!same || Array.from(this._series.keys())[i] !== spec.id) {
        changed = true;
      }
      next.set(spec.id, old ? { ...old, ...spec } : { ...spec, xs: [], ys: [], sorted: true });
    });
    this._series = next;
    if (changed) {
      this._destroyPlot();
    }
    this.scheduleDraw();
  }

  hasSeries(id: string): boolean {
    return this._series.has(id);
  }

  /** Add points to a series (points with no x are dropped). */
  append(id: string, xs: (number | null)[], ys: (number | null)[]): void {
    const s = this._series.get(id);
    if (!s) {
      return;
    }
    for (let i = 0; i < xs.length; i++) {
      const x = xs[i];
      if (x === null || x === undefined || !Number.isFinite(x)) {
        continue;
      }
      const y = ys[i];
      if (s.xs.length && x < s.xs[s.xs.length - 1]) {
        s.sorted = false;
      }
      s.xs.push(x);
      s.ys.push(y === null || y === undefined || !Number.isFinite(y) ? null : y);
    }
    this.scheduleDraw();
  }

  /** Replace a series' points. */
  replace(id: string, xs: (number | null)[], ys: (number | null)[]): void {
    const s = this._series.get(id);
    if (s) {
      s.xs = [];
      s.ys = [];
      s.sorted = true;
      this.append(id, xs, ys);
    }
  }

  get points(): number {
    let n = 0;
    for (const s of this._series.values()) {
      n += s.xs.length;
    }
    return n;
  }

  scheduleDraw(): void {
    if (this._frame === 0 && !this._disposed) {
      this._frame = requestAnimationFrame(() => {
        this._frame = 0;
        this._draw();
      });
    }
  }

  /** Rebuild with the current theme's colours. */
  restyle(): void {
    this._destroyPlot();
    this.scheduleDraw();
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
    this._destroyPlot();
  }

  private _data(): uPlot.AlignedData {
    const tables: uPlot.AlignedData[] = [];
    for (const s of this._series.values()) {
      if (!s.sorted) {
        const order = s.xs.map((_, i) => i).sort((a, b) => s.xs[a] - s.xs[b]);
        s.xs = order.map(i => s.xs[i]);
        s.ys = order.map(i => s.ys[i]);
        s.sorted = true;
      }
      tables.push([s.xs, s.ys] as uPlot.AlignedData);
    }
    if (tables.length === 0) {
      return [[]];
    }
    return tables.length === 1 ? tables[0] : uPlot.join(tables);
  }

  private _width(): number {
    return Math.max(0, Math.floor(this._plotHost.clientWidth || this.node.clientWidth));
  }

  private _draw(): void {
    if (this._disposed) {
      return;
    }
    const width = this._width();
    if (width < 40) {
      return; // hidden: drawn when it gets a size (ResizeObserver)
    }
    const data = this._data();
    if (this._plot === null) {
      this._plot = new uPlot(this._options(width), data, this._plotHost);
    } else {
      this._plot.setData(data);
    }
    this.node.dataset.points = String(this.points);
  }

  private _onResize(): void {
    const width = this._width();
    if (this._plot && width >= 40 && width !== this._plot.width) {
      this._plot.setSize({ width, height: this._height });
    } else if (!this._plot) {
      this.scheduleDraw();
    }
  }

  private _options(width: number): uPlot.Options {
    const font = cssVar('--jp-ui-font-color2', '#666');
    const grid = cssVar('--jp-border-color2', '#ddd');
    const family = cssVar('--jp-ui-font-family', 'sans-serif');
    const background = cssVar('--jp-layout-color0', '#fff');
    const axisFont = `11px ${family}`;
    const axis = (label?: string): uPlot.Axis => ({
      stroke: font,
      grid: { stroke: grid, width: 1 },
      ticks: { stroke: grid, width: 1 },
      font: axisFont,
      labelFont: axisFont,
      label,
      labelSize: label ? 16 : 0
    });
    return {
      width,
      height: this._height,
      scales: { x: { time: false } },
      // steps and epochs are integers: no 0.25 ticks on a short run
      axes: [{ ...axis(this._xLabel), incrs: INTEGER_INCRS }, { ...axis(), size: 56 }],
      cursor: { drag: { x: true, y: false } },
      legend: { show: true, live: true },
      series: [
        { label: this._xLabel },
        ...Array.from(this._series.values()).map(s => ({
          label: s.label,
          stroke: s.color,
          width: 1.5,
          points: { fill: background },
          value: (_u: uPlot, v: number | null) =>
            v === null || v === undefined ? '–' : String(Number(v.toPrecision(4)))
        }))
      ]
    };
  }

  private _destroyPlot(): void {
    if (this._plot) {
      this._plot.destroy();
      this._plot = null;
    }
  }

  private _series = new Map<string, ISeriesData>();
  private _plot: uPlot | null = null;
  private _plotHost: HTMLDivElement;
  private _resize: ResizeObserver;
  private _frame = 0;
  private _disposed = false;
  private _height: number;
  private _xLabel: string;
}

const SVG = 'http://www.w3.org/2000/svg';

/** A tiny line of the last values of a metric: `svg.jpe-spark` (no axes, no library). */
export class Sparkline {
  readonly node: SVGSVGElement;

  constructor() {
    this.node = document.createElementNS(SVG, 'svg');
    this.node.setAttribute('class', 'jpe-spark');
    this.node.setAttribute('viewBox', '0 0 100 20');
    this.node.setAttribute('preserveAspectRatio', 'none');
    this._line = document.createElementNS(SVG, 'polyline');
    this._line.setAttribute('vector-effect', 'non-scaling-stroke');
    this.node.append(this._line);
  }

  set(values: (number | null)[]): void {
    const ys = values.filter((v): v is number => v !== null && Number.isFinite(v));
    this.node.dataset.points = String(ys.length);
    if (ys.length < 2) {
      this._line.setAttribute('points', '');
      return;
    }
    let lo = Math.min(...ys);
    let hi = Math.max(...ys);
    if (hi === lo) {
      lo -= 1;
      hi += 1;
    }
    const pts = ys.map((y, i) => {
      const px = (i / (ys.length - 1)) * 100;
      const py = 19 - ((y - lo) / (hi - lo)) * 18;
      return `${px.toFixed(2)},${py.toFixed(2)}`;
    });
    this._line.setAttribute('points', pts.join(' '));
  }

  private _line: SVGPolylineElement;
}
