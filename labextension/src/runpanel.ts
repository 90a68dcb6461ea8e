// A run in the main area, with no kernel: header, progress, live charts (one per panel
// group: train_x, val_x and x_epoch share the panel "x"), latest values, the log tail,
// the traceback of a failed run, and Stop. Polls while the run is active and the panel
// is visible; metrics come incrementally (`after` the last chunk read).

import { Poll } from '@lumino/polling';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { api, ApiError, IRunDetail, isActive } from './api';
import { ChartGrid, paletteColor } from './chart';
import {
  formatDevices,
  formatDuration,
  formatTime,
  formatValue,
  groupByPanel,
  h,
  setStatus,
  setText,
  statusBadge
} from './format';
import { stopRun } from './sidebar';
import { ApiState, ServerClock } from './state';

const LOG_TAIL = 200;
const FIRST_MAX_POINTS = 4000;

export class RunPanel extends Widget {
  constructor(
    readonly runId: string,
    private state: ApiState
  ) {
    super();
    this.addClass('jpe-run-panel');
    this.node.dataset.runId = runId;
    this.title.label = runId;
    this.title.caption = `run ${runId}`;
    this.title.closable = true;

    this.nameEl = h('h2', { className: 'jpe-run-panel-name', text: runId });
    this.statusEl = statusBadge('queued');
    this.statusEl.hidden = true;
    this.metaEl = h('div', { className: 'jpe-run-panel-meta' });
    this.stopButton = h('button', {
      className: 'jpe-stop jp-mod-styled jp-mod-warn',
      text: 'Stop',
      title: 'Stop this run at the next step (keeps last.ckpt)'
    });
    this.stopButton.hidden = true;
    this.stopButton.addEventListener('click', async () => {
      this.stopButton.disabled = true;
      this.stopButton.textContent = 'Stopping…';
      await stopRun(this.runId, this.detail?.name ?? this.runId);
      void this.poll.refresh();
    });
    this.fill = h('div', { className: 'jpe-progress-fill' });
    this.bar = h('div', { className: 'jpe-progress' }, [this.fill]);
    this.progressText = h('span', { className: 'jpe-progress-text' });
    this.message = h('div', { className: 'jpe-panel-message' });
    this.message.hidden = true;
    this.charts = h('div', { className: 'jpe-charts' });
    this.chart = new ChartGrid({ xLabel: 'step', height: 200, panelClass: 'jpe-chart' });
    this.charts.append(this.chart.node);
    this.noMetrics = h('div', { className: 'jpe-empty', text: 'No metrics logged yet.' });
    this.table = h('table', { className: 'jpe-latest' });
    this.logs = h('pre', { className: 'jpe-log' });
    this.traceback = h('pre', { className: 'jpe-traceback' });
    this.tracebackSection = h('section', { className: 'jpe-traceback-section' }, [
      h('h3', { text: 'Error' }),
      this.traceback
    ]);
    this.tracebackSection.hidden = true;

    this.node.append(
      h('header', { className: 'jpe-run-panel-header' }, [
        h('div', { className: 'jpe-run-line' }, [this.nameEl, this.statusEl, this.stopButton]),
        this.metaEl,
        h('div', { className: 'jpe-run-line jpe-run-progress' }, [this.bar, this.progressText])
      ]),
      this.message,
      this.tracebackSection,
      h('section', {}, [h('h3', { text: 'Metrics' }), this.noMetrics, this.charts]),
      h('section', {}, [h('h3', { text: 'Latest values' }), this.table]),
      h('section', {}, [h('h3', { text: 'Log' }), this.logs])
    );

    this.poll = new Poll({
      name: `jupyter-ext:run:${runId}`,
      factory: () => this._tick(),
      frequency: { interval: 1000, backoff: true, max: 30_000 },
      // A hidden panel (a background tab) loads once, for its title, then waits.
      standby: () => (this.isVisible || this._detail === null ? 'when-hidden' : true)
    });
  }

  get detail(): IRunDetail | null {
    return this._detail;
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
    if (!this._finished) {
      void this.poll.refresh();
    }
  }

  private async _tick(): Promise<void> {
    try {
      const detail = await api.run(this.runId);
      this.state.ok();
      this._detail = detail;
      this._showMessage('');
      this._renderHeader(detail);
      const metrics = await api.metrics(this.runId, {
        after: this._after,
        maxPoints: this._after === null ? FIRST_MAX_POINTS : undefined
      });
      this._appendMetrics(metrics.series ?? {});
      if (metrics.last !== null && metrics.last !== undefined) {
        this._after = metrics.last;
      }
      this._renderTable(detail);
      const logs = await api.logs(this.runId, LOG_TAIL);
      const atBottom =
        this.logs.scrollTop + this.logs.clientHeight >= this.logs.scrollHeight - 4;
      setText(this.logs, logs.text || '(no output yet)');
      if (atBottom) {
        this.logs.scrollTop = this.logs.scrollHeight;
      }
      if (!isActive(detail.status)) {
        // One last full read happened after the run ended: nothing will change now.
        this._finished = true;
        void this.poll.stop();
      }
    } catch (error) {
      this.state.fail(error);
      if (error instanceof ApiError && error.status === 404) {
        this._showMessage(`Run ${this.runId} is not in this workspace: ${error.message}`);
        this._finished = true;
        void this.poll.stop();
        return;
      }
      this._showMessage((error as Error).message ?? String(error));
      throw error;
    }
  }

  private _showMessage(text: string): void {
    setText(this.message, text);
    this.message.hidden = !text;
  }

  private _renderHeader(d: IRunDetail): void {
    const active = isActive(d.status);
    this.title.label = d.name;
    this.title.caption = `${d.name} (${d.id}): ${d.status}`;
    setText(this.nameEl, d.name);
    this.statusEl.hidden = false;
    setStatus(this.statusEl, d.status);
    this.node.dataset.status = d.status;
    const meta: [string, string][] = [
      ['id', d.id],
      ['experiment', d.experiment],
      ['accelerator', formatDevices(d.accelerator, d.devices)],
      ['created', formatTime(d.created)]
    ];
    if (d.host || d.pid) {
      meta.push(['worker', `${d.host ?? ''}${d.pid ? ` pid ${d.pid}` : ''}`]);
    }
    if (d.log_every_n_steps) {
      meta.push(['logs every', `${d.log_every_n_steps} step${d.log_every_n_steps > 1 ? 's' : ''}`]);
    }
    if (d.best_checkpoint) {
      meta.push(['best checkpoint', d.best_checkpoint]);
    }
    this.metaEl.replaceChildren(
      ...meta.map(([k, v]) =>
        h('span', { className: 'jpe-meta-item' }, [
          h('span', { className: 'jpe-meta-key', text: k }),
          h('span', { className: 'jpe-meta-value', text: v })
        ])
      )
    );

    const p = d.progress;
    const fraction =
      d.status === 'succeeded' ? 1 : p.fraction === null ? null : Math.min(1, p.fraction);
    this.fill.style.width = fraction === null ? '0%' : `${(fraction * 100).toFixed(1)}%`;
    this.bar.classList.toggle('jpe-progress-unknown', fraction === null && active);
    const bits: string[] = [];
    if (d.position) {
      bits.push(d.position); // "epoch 15/15 · step 225/225", as the notebook's monitor reads
    } else {
      if (p.epoch !== null && p.epoch !== undefined) {
        bits.push(`epoch ${p.epoch + 1}`); // Lightning counts epochs from 0, people from 1
      }
      if (p.step !== null && p.step !== undefined) {
        bits.push(p.total_steps ? `step ${p.step}/${p.total_steps}` : `step ${p.step}`);
      }
    }
    if (active && p.eta_s !== null && p.eta_s !== undefined) {
      bits.push(`ETA ${formatDuration(p.eta_s)}`);
    }
    const elapsed =
      d.duration_s ??
      (d.started !== null ? (d.ended ?? this._clock.now()) - d.started : null);
    if (elapsed !== null) {
      bits.push(`elapsed ${formatDuration(elapsed)}`);
    }
    setText(this.progressText, bits.join(' · '));

    this.stopButton.hidden = !active;
    if (active && this.stopButton.textContent !== 'Stopping…') {
      this.stopButton.disabled = false;
    }
    this.tracebackSection.hidden = !((d.status === 'failed' || d.status === 'lost') && d.error);
    setText(this.traceback, this.tracebackSection.hidden ? '' : (d.error ?? ''));
  }

  private _appendMetrics(series: Record<string, { step: any[]; value: any[] }>): void {
    const keys = new Set([...this._keys, ...Object.keys(series)]);
    if (keys.size !== this._keys.size) {
      this._keys = keys;
      this._layoutCharts();
    }
    for (const [key, s] of Object.entries(series)) {
      this.chart.append(key, s.step ?? [], s.value ?? []);
    }
    this.noMetrics.hidden = this._keys.size > 0;
  }

  /** One panel per group (train_x, val_x and x_epoch share "x"); a new key joins it. */
  private _layoutCharts(): void {
    const groups = groupByPanel(this._keys);
    this.chart.setPanels(Array.from(groups.keys()));
    const metas = [];
    for (const [panel, keys] of groups) {
      for (const key of keys) {
        metas.push({ id: key, panel, label: key, color: this._color(key) });
      }
    }
    this.chart.setSeries(metas);
  }

  /** A stable colour per key: the server's (the notebook monitor's), else the palette. */
  private _color(key: string): string {
    if (!this._colors.has(key)) {
      const color = this._detail?.colors?.[key] ?? paletteColor(this._colors.size);
      this._colors.set(key, color);
    }
    return this._colors.get(key)!;
  }

  private _renderTable(d: IRunDetail): void {
    const keys = Object.keys(d.metrics).sort();
    const rows = keys.map(k =>
      h('tr', {}, [
        h('td', { className: 'jpe-latest-key', text: k }),
        h('td', { className: 'jpe-latest-value', text: formatValue(d.metrics[k]) })
      ])
    );
    this.table.replaceChildren(
      h('thead', {}, [h('tr', {}, [h('th', { text: 'metric' }), h('th', { text: 'latest' })])]),
      h('tbody', {}, rows)
    );
  }

  private poll: Poll;
  private _detail: IRunDetail | null = null;
  private _after: number | string | null = null;
  private _finished = false;
  private _keys = new Set<string>();
  private chart: ChartGrid;
  private _colors = new Map<string, string>();
  private _clock = new ServerClock();
  private nameEl: HTMLElement;
  private statusEl: HTMLElement;
  private metaEl: HTMLElement;
  private stopButton: HTMLButtonElement;
  private bar: HTMLElement;
  private fill: HTMLElement;
  private progressText: HTMLElement;
  private message: HTMLElement;
  private charts: HTMLElement;
  private noMetrics: HTMLElement;
  private table: HTMLTableElement;
  private logs: HTMLElement;
  private traceback: HTMLElement;
  private tracebackSection: HTMLElement;
}
