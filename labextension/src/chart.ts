// The lab panels' colours, and the chart module's pieces they use: every curve (panels and
// sidebar sparklines) is drawn by uPlot through ./chart/, as the notebook's LiveChart is.

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

export { ChartGrid, ensureChartStyle, restyleCharts } from './chart/index';
export type { ISeriesMeta } from './chart/index';

export { Sparkline } from './chart/sparkline';
