// The lab panels' colours and the sidebar's sparklines. Every chart with axes is the
// chart module's ChartGrid (./chart/), the same one the notebook's LiveChart draws with.

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

export { ChartGrid, restyleCharts } from './chart/index';
export type { ISeriesMeta } from './chart/index';

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
