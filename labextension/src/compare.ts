// Several runs side by side in the main area: one chart per metric, one colour per run
// (the same in every chart and in the table), the legend naming the runs. Follows the
// runs that are still active; stops polling once all have ended.

import { Poll } from '@lumino/polling';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { api, IRunDetail, isActive } from './api';
import { ChartGrid, ISeriesMeta, paletteColor } from './chart';
import { formatDuration, formatValue, h, mainMetric, statusBadge } from './format';
import { ApiState } from './state';

const FIRST_MAX_POINTS = 2000;

interface IRunState {
  id: string;
  color: string;
  detail: IRunDetail | null;
  after: number | string | null;
  done: boolean;
}

export class ComparePanel extends Widget {
  constructor(
    readonly runIds: string[],
    private state: ApiState
  ) {
    super();
    this.addClass('jpe-compare-panel');
    this.node.dataset.runIds = runIds.join(',');
    this.title.label = `Compare ${runIds.length} runs`;
    this.title.caption = runIds.join(', ');
    this.title.closable = true;
    this._runs = runIds.map((id, i) => ({
      id,
      color: paletteColor(i),
      detail: null,
      after: null,
      done: false
    }));
    this.message = h('div', { className: 'jpe-panel-message' });
    this.message.hidden = true;
    this.table = h('table', { className: 'jpe-compare-table' });
    this.charts = h('div', { className: 'jpe-charts' });
    this.chart = new ChartGrid({ xLabel: 'step', height: 200, panelClass: 'jpe-chart', runs: true });
    this.charts.append(this.chart.node);
    this.node.append(
      h('h2', { className: 'jpe-run-panel-name', text: this.title.label }),
      this.message,
      this.table,
      this.charts
    );
    this.poll = new Poll({
      name: 'jupyter-ext:compare',
      factory: () => this._tick(),
      frequency: { interval: 2000, backoff: true, max: 30_000 },
      // A hidden panel (a background tab) loads once, then waits until it is shown.
      standby: () => (this.isVisible || !this._loaded ? 'when-hidden' : true)
    });
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.poll.dispose();
    this.chart.dispose();
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    if (this._runs.some(r => !r.done)) {
      void this.poll.refresh();
    }
  }

  private async _tick(): Promise<void> {
    const errors: string[] = [];
    await Promise.all(
      this._runs
        .filter(r => !r.done)
        .map(async r => {
          try {
            const detail = await api.run(r.id);
            r.detail = detail;
            const metrics = await api.metrics(r.id, {
              after: r.after,
              maxPoints: r.after === null ? FIRST_MAX_POINTS : undefined
            });
            this._append(r, metrics.series ?? {});
            if (metrics.last !== null && metrics.last !== undefined) {
              r.after = metrics.last;
            }
            r.done = !isActive(detail.status);
            this.state.ok();
          } catch (error) {
            this.state.fail(error);
            errors.push(`${r.id}: ${(error as Error).message ?? error}`);
          }
        })
    );
    this._loaded = true;
    this._renderTable();
    this._labelSeries();
    setTextHidden(this.message, errors.join('\n'));
    if (this._runs.every(r => r.done)) {
      void this.poll.stop();
    } else if (errors.length) {
      throw new Error(errors.join('; ')); // back off
    }
  }

  private _label(r: IRunState): string {
    const name = r.detail?.name ?? r.id;
    const twins = this._runs.filter(o => (o.detail?.name ?? o.id) === name).length;
    return twins > 1 ? `${name} (${r.id.slice(-8)})` : name;
  }

  private _append(r: IRunState, series: Record<string, { step: any[]; value: any[] }>): void {
    let declared = false;
    for (const key of Object.keys(series)) {
      const has = this._has.get(key) ?? new Set<string>();
      this._has.set(key, has);
      if (!has.has(r.id)) {
        has.add(r.id);
        declared = true;
      }
    }
    if (declared) {
      this._labelSeries();
    }
    for (const [key, s] of Object.entries(series)) {
      this.chart.append(seriesId(r.id, key), s.step ?? [], s.value ?? []);
    }
  }

  /** Names can arrive after the first points: keep legends in step. One panel per
   * metric, the main metric of the first run first; one colour per run. */
  private _labelSeries(): void {
    const keys = Array.from(this._has.keys()).sort();
    const main = mainMetric(keys);
    const ordered = main ? [main, ...keys.filter(k => k !== main)] : keys;
    const metas: ISeriesMeta[] = [];
    for (const key of ordered) {
      const has = this._has.get(key)!;
      for (const r of this._runs) {
        if (has.has(r.id)) {
          metas.push({ id: seriesId(r.id, key), panel: key, label: this._label(r), color: r.color });
        }
      }
    }
    this.chart.setPanels(ordered);
    this.chart.setSeries(metas);
  }

  private _renderTable(): void {
    const keys = Array.from(
      new Set(this._runs.flatMap(r => Object.keys(r.detail?.metrics ?? {})))
    ).sort();
    const head = h('tr', {}, [
      h('th', { text: 'run' }),
      h('th', { text: 'status' }),
      h('th', { text: 'experiment' }),
      h('th', { text: 'duration' }),
      ...keys.map(k => h('th', { text: k }))
    ]);
    const rows = this._runs.map(r => {
      const d = r.detail;
      const swatch = h('span', { className: 'jpe-swatch' });
      swatch.style.background = r.color;
      return h('tr', { attrs: { 'data-run-id': r.id } }, [
        h('td', { title: r.id }, [swatch, this._label(r)]),
        h('td', {}, [statusBadge(d?.status ?? '?')]),
        h('td', { text: d?.experiment ?? '' }),
        h('td', { text: formatDuration(d?.duration_s ?? null) }),
        ...keys.map(k => h('td', { text: formatValue(d?.metrics?.[k] ?? null) }))
      ]);
    });
    this.table.replaceChildren(h('thead', {}, [head]), h('tbody', {}, rows));
  }

  private poll: Poll;
  private _loaded = false;
  private _runs: IRunState[];
  private chart: ChartGrid;
  /** Which runs sent points of each metric. */
  private _has = new Map<string, Set<string>>();
  private message: HTMLElement;
  private table: HTMLTableElement;
  private charts: HTMLElement;
}

function seriesId(runId: string, key: string): string {
  return `${runId}/${key}`;
}

function setTextHidden(el: HTMLElement, text: string): void {
  if (el.textContent !== text) {
    el.textContent = text;
  }
  el.hidden = !text;
}
