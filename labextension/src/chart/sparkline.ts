// A sparkline: the last values of a metric, drawn by uPlot like every other curve (no
// axes, no cursor, no legend), for a run's row in the sidebar.

import uPlot from 'uplot';

const WIDTH = 72;
const HEIGHT = 18;

function brand(el: Element): string {
  const v = getComputedStyle(el).getPropertyValue('--jp-brand-color1').trim();
  return v || '#1976d2';
}

/** `.jpe-spark` with `data-points` (finite values drawn). */
export class Sparkline {
  readonly node: HTMLDivElement;

  constructor() {
    this.node = document.createElement('div');
    this.node.className = 'jpe-spark';
    this.node.dataset.points = '0';
  }

  set(values: (number | null)[]): void {
    const ys = values.filter((v): v is number => v !== null && Number.isFinite(v));
    this.node.dataset.points = String(ys.length);
    if (ys.length < 2) {
      this._destroy();
      return;
    }
    const data: uPlot.AlignedData = [ys.map((_, i) => i), ys];
    if (this._plot) {
      this._plot.setData(data); // a longer run: same plot, new points (no rebuild)
      return;
    }
    this._plot = new uPlot(
      {
        width: WIDTH,
        height: HEIGHT,
        pxAlign: false,
        cursor: { show: false },
        select: { show: false, left: 0, top: 0, width: 0, height: 0 },
        legend: { show: false },
        scales: { x: { time: false } },
        axes: [{ show: false }, { show: false }],
        series: [{}, { stroke: brand(this.node), width: 1.5, points: { show: false } }]
      },
      data,
      this.node
    );
  }

  dispose(): void {
    this._destroy();
  }

  private _destroy(): void {
    this._plot?.destroy();
    this._plot = null;
  }

  private _plot: uPlot | null = null;
}
