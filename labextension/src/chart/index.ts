// The chart module: one chart for every live curve (notebook widget and lab panels).
export { ChartGrid, ensureChartStyle, restyleCharts } from './grid';
export type { IChartOptions, IReading, ISeriesMeta } from './grid';
export { Line, SeriesStore, float64 } from './series';
export { align, BucketAccumulator, ema, gridFor } from './shape';
export { fmtDuration, fmtNum, fmtX } from './format';
export { Sparkline } from './sparkline';
