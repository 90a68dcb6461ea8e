// The left sidebar: runs grouped by experiment, deployments, and an accelerators strip.
// Each section polls its route while it is visible (Poll's standby otherwise) and backs
// off on errors; the runs list asks only for what changed (`since`) after a first load.

import { Clipboard, Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import { SidePanel, refreshIcon, ToolbarButton } from '@jupyterlab/ui-components';
import { Poll } from '@lumino/polling';
import { Message } from '@lumino/messaging';
import { AccordionPanel, Widget } from '@lumino/widgets';
import { CommandRegistry } from '@lumino/commands';

import {
  api,
  ApiError,
  IAccelerator,
  IDeployment,
  IRun,
  isActive,
  isLiveDeployment
} from './api';
import { Sparkline } from './chart';
import {
  formatDevices,
  formatDuration,
  formatMB,
  formatTime,
  formatValue,
  h,
  mainMetric,
  setStatus,
  setText,
  statusBadge
} from './format';
import { runsIcon } from './icons';
import { ApiState, ServerClock } from './state';

/** Commands the sidebar runs (registered by the plugin). */
export const CommandIDs = {
  openRun: 'jupyter-ext:open-run',
  compare: 'jupyter-ext:compare',
  showSidebar: 'jupyter-ext:show-sidebar'
};

const PAGE = 200;
const SPARK_POINTS = 60;
const SPARK_EVERY_S = 4; // at most this often per active run
const SPARK_PARALLEL = 4;

/** Stop a run, saying why when it cannot be stopped. */
export async function stopRun(id: string, name: string): Promise<void> {
  try {
    await api.stop(id);
  } catch (error) {
    if (error instanceof ApiError && error.status === 409) {
      Notification.info(`Run ${name} has already ended.`, { autoClose: 4000 });
    } else {
      Notification.error(`Could not stop run ${name}: ${(error as Error).message}`);
    }
  }
}

/** A section body whose poll runs only while it is visible and the API answers. */
abstract class PolledSection extends Widget {
  constructor(
    protected state: ApiState,
    options: { name: string; interval: number; max: number; probe?: boolean }
  ) {
    super();
    this._probe = options.probe ?? false;
    this._error = h('div', { className: 'jpe-section-error' });
    this._error.hidden = true;
    this.node.append(this._error);
    this.poll = new Poll({
      name: `jupyter-ext:${options.name}`,
      factory: () => this._tick(),
      frequency: { interval: options.interval, backoff: true, max: options.max },
      standby: () => this.standby()
    });
    state.changed.connect(this._onState, this);
  }

  protected readonly poll: Poll;

  /** Refresh now. */
  refresh(): Promise<void> {
    return this.poll.refresh();
  }

  /**
   * Whether to skip ticks now: when hidden, and while the API is away (except for the
   * section that probes for its return, with backoff).
   */
  protected standby(): boolean | Poll.Standby {
    if (!this.isVisible || (this.state.available === false && !this._probe)) {
      return true;
    }
    return 'when-hidden';
  }

  protected abstract update_(): Promise<void>;

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.poll.dispose();
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this.poll.refresh();
  }

  private async _tick(): Promise<void> {
    try {
      await this.update_();
      this.state.ok();
      this._error.hidden = true;
    } catch (error) {
      this.state.fail(error);
      if (!(error instanceof Error && error.name === 'ApiUnavailable')) {
        this._error.textContent = `Could not refresh: ${(error as Error).message ?? error}`;
        this._error.hidden = false;
      }
      throw error; // the poll backs off
    }
  }

  private _onState(): void {
    if (this.state.available) {
      void this.poll.refresh();
    }
  }

  private _error: HTMLElement;
  private _probe: boolean;
}

/** One run's row in the list: `.jpe-run[data-run-id]`. */
class RunRow {
  readonly node: HTMLElement;
  run: IRun;
  sparkStamp = '';
  sparkFetched = 0;
  sparkBusy = false;
  visible = false;

  constructor(run: IRun, owner: RunsSection) {
    this.run = run;
    this.checkbox = h('input', {
      className: 'jpe-select',
      attrs: { type: 'checkbox', 'aria-label': `select ${run.name}` }
    });
    this.nameEl = h('span', { className: 'jpe-run-name' });
    this.statusEl = statusBadge(run.status);
    this.fill = h('div', { className: 'jpe-progress-fill' });
    this.bar = h('div', { className: 'jpe-progress' }, [this.fill]);
    this.progressText = h('span', { className: 'jpe-progress-text' });
    this.metricEl = h('span', { className: 'jpe-run-metric' });
    this.spark = new Sparkline();
    this.elapsedEl = h('span', { className: 'jpe-run-elapsed', title: 'elapsed' });
    this.stopButton = h('button', {
      className: 'jpe-stop jp-mod-styled jp-mod-warn',
      text: 'Stop',
      title: 'Stop this run at the next step (keeps last.ckpt)'
    });
    this.errorEl = h('div', { className: 'jpe-run-error' });
    this.node = h('div', { className: 'jpe-run', attrs: { 'data-run-id': run.id } }, [
      h('div', { className: 'jpe-run-line' }, [
        this.checkbox,
        this.nameEl,
        this.stopButton,
        this.statusEl
      ]),
      h('div', { className: 'jpe-run-line jpe-run-progress' }, [this.bar, this.progressText]),
      h('div', { className: 'jpe-run-line' }, [this.metricEl, this.spark.node, this.elapsedEl]),
      this.errorEl
    ]);
    this.node.tabIndex = 0;
    this.node.addEventListener('click', event => {
      const target = event.target as HTMLElement;
      if (target === this.checkbox || target === this.stopButton) {
        return;
      }
      void owner.openRun(this.run.id);
    });
    this.node.addEventListener('keydown', event => {
      if (event.key === 'Enter' && event.target === this.node) {
        void owner.openRun(this.run.id);
      }
    });
    this.checkbox.addEventListener('change', () =>
      owner.select(this.run.id, this.checkbox.checked)
    );
    this.stopButton.addEventListener('click', async () => {
      this.stopButton.disabled = true;
      this.stopButton.textContent = 'Stopping…';
      await stopRun(this.run.id, this.run.name);
      owner.refreshSoon();
    });
    this.update(run, null);
  }

  /** The key the row's value and sparkline show. */
  get sparkKey(): string | null {
    return mainMetric(Object.keys(this.run.metrics));
  }

  /** What a new sparkline would differ by (empty: nothing to fetch). */
  get wantedStamp(): string {
    const key = this.sparkKey;
    return key === null ? '' : `${key}|${this.run.metrics[key]}|${this.run.status}`;
  }

  update(run: IRun, clock: ServerClock | null): void {
    this.run = run;
    const active = isActive(run.status);
    this.node.dataset.status = run.status;
    this.node.title = `${run.name} (${run.id})\nexperiment ${run.experiment} · ${formatDevices(
      run.accelerator,
      run.devices
    )}\ncreated ${formatTime(run.created)}`;
    setText(this.nameEl, run.name);
    setStatus(this.statusEl, run.status);
    this.statusEl.title = run.error_line ?? run.status;

    const p = run.progress;
    const fraction =
      run.status === 'succeeded' ? 1 : p.fraction === null ? null : Math.min(1, p.fraction);
    this.fill.style.width = fraction === null ? '0%' : `${(fraction * 100).toFixed(1)}%`;
    this.bar.classList.toggle('jpe-progress-unknown', fraction === null && active);
    const bits: string[] = [];
    if (p.step !== null && p.step !== undefined) {
      bits.push(p.total_steps ? `${p.step}/${p.total_steps}` : `step ${p.step}`);
    }
    if (active && p.eta_s !== null && p.eta_s !== undefined) {
      bits.push(`ETA ${formatDuration(p.eta_s)}`);
    }
    setText(this.progressText, bits.join(' · '));

    const key = this.sparkKey;
    setText(this.metricEl, key === null ? '' : `${key} ${formatValue(run.metrics[key])}`);
    this.metricEl.title = key ?? '';
    setText(this.elapsedEl, formatDuration(this.elapsed(clock)));
    this.stopButton.hidden = !active;
    if (active && this.stopButton.textContent !== 'Stopping…') {
      this.stopButton.disabled = false;
    }
    setText(
      this.errorEl,
      run.status === 'failed' || run.status === 'lost' ? (run.error_line ?? '') : ''
    );
  }

  elapsed(clock: ServerClock | null): number | null {
    const run = this.run;
    if (run.duration_s !== null && run.duration_s !== undefined && !isActive(run.status)) {
      return run.duration_s;
    }
    const start = run.started ?? (isActive(run.status) ? null : run.created);
    if (start === null) {
      return null;
    }
    const end = run.ended ?? (clock ? clock.now() : Date.now() / 1000);
    return end - start;
  }

  matches(filter: string): boolean {
    if (!filter) {
      return true;
    }
    const r = this.run;
    return [r.name, r.experiment, r.id, r.status].some(v =>
      String(v ?? '')
        .toLowerCase()
        .includes(filter)
    );
  }

  readonly checkbox: HTMLInputElement;
  readonly spark: Sparkline;
  private nameEl: HTMLElement;
  private statusEl: HTMLElement;
  private bar: HTMLElement;
  private fill: HTMLElement;
  private progressText: HTMLElement;
  private metricEl: HTMLElement;
  private elapsedEl: HTMLElement;
  private stopButton: HTMLButtonElement;
  private errorEl: HTMLElement;
}

/** The runs of one experiment: `.jpe-group[data-experiment]`. */
class Group {
  readonly node: HTMLElement;
  readonly body: HTMLElement;
  collapsed = false;

  constructor(readonly experiment: string) {
    this.caret = h('span', { className: 'jpe-caret', text: '▾' });
    this.count = h('span', { className: 'jpe-group-count' });
    const header = h('div', { className: 'jpe-group-header', title: 'collapse / expand' }, [
      this.caret,
      h('span', { className: 'jpe-group-name', text: experiment }),
      this.count
    ]);
    this.body = h('div', { className: 'jpe-group-body' });
    this.node = h('div', { className: 'jpe-group', attrs: { 'data-experiment': experiment } }, [
      header,
      this.body
    ]);
    header.addEventListener('click', () => {
      this.collapsed = !this.collapsed;
      this.body.hidden = this.collapsed;
      this.caret.textContent = this.collapsed ? '▸' : '▾';
    });
  }

  setCount(shown: number, total: number): void {
    setText(this.count, shown === total ? `${total}` : `${shown}/${total}`);
  }

  private caret: HTMLElement;
  private count: HTMLElement;
}

/** The runs section. */
export class RunsSection extends PolledSection {
  constructor(
    state: ApiState,
    private commands: CommandRegistry
  ) {
    super(state, { name: 'runs', interval: 1500, max: 30_000, probe: true });
    this.addClass('jpe-runs');
    this.title.label = 'Experiments';
    this.filter = h('input', {
      className: 'jpe-filter jp-mod-styled',
      attrs: {
        type: 'search',
        // Short enough for a narrow sidebar; the tooltip says what it matches.
        placeholder: 'Filter runs',
        title: 'Matches name, experiment, id and status',
        'aria-label': 'filter runs'
      }
    });
    this.compareButton = h('button', {
      className: 'jpe-compare jp-mod-styled jp-mod-accept',
      text: 'Compare',
      title: 'Compare the selected runs'
    });
    this.compareButton.disabled = true;
    this.list = h('div', { className: 'jpe-runs-list' });
    this.empty = h('div', {
      className: 'jpe-empty',
      text: 'No runs yet. Launch one from a notebook: %load_ext jupyter_ext, then %%train.'
    });
    this.empty.hidden = true;
    this.more = h('button', { className: 'jpe-more jp-mod-styled', text: 'Load older runs' });
    this.more.hidden = true;
    this.node.append(
      h('div', { className: 'jpe-runs-toolbar' }, [this.filter, this.compareButton]),
      this.empty,
      this.list,
      this.more
    );
    this.filter.addEventListener('input', () => this._applyFilter());
    this.compareButton.addEventListener('click', () => {
      const ids = this._ordered().filter(id => this.selected.has(id));
      void this.commands.execute(CommandIDs.compare, { ids });
    });
    this.more.addEventListener('click', () => void this._loadOlder());
    this._io = new IntersectionObserver(entries => {
      for (const entry of entries) {
        const row = this.rows.get((entry.target as HTMLElement).dataset.runId ?? '');
        if (row) {
          row.visible = entry.isIntersecting;
        }
      }
      this._refreshSparks();
    });
    this._elapsedTimer = window.setInterval(() => this._tickElapsed(), 1000);
  }

  readonly selected = new Set<string>();

  openRun(id: string): Promise<unknown> {
    return this.commands.execute(CommandIDs.openRun, { id });
  }

  select(id: string, on: boolean): void {
    if (on) {
      this.selected.add(id);
    } else {
      this.selected.delete(id);
    }
    const n = this.selected.size;
    this.compareButton.disabled = n < 2;
    this.compareButton.textContent = n ? `Compare (${n})` : 'Compare';
  }

  /** Reload everything at the next tick (drops runs deleted since). */
  reload(): void {
    this._since = null;
    void this.poll.refresh();
  }

  refreshSoon(): void {
    void this.poll.refresh();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._io.disconnect();
    window.clearInterval(this._elapsedTimer);
    for (const row of this.rows.values()) {
      row.spark.dispose();
    }
    super.dispose();
  }

  protected async update_(): Promise<void> {
    if (this._since === null) {
      const page = await api.runs({ limit: PAGE });
      this.clock.sync(page.now);
      for (const id of Array.from(this.rows.keys())) {
        if (!page.runs.some(r => r.id === id)) {
          this._remove(id);
        }
      }
      page.runs.forEach(run => this._upsert(run));
      this._next = page.next;
      this._since = page.now;
    } else {
      const changes = await api.runs({ since: this._since });
      this.clock.sync(changes.now);
      changes.runs.forEach(run => this._upsert(run));
      this._since = changes.now;
    }
    this._arrange();
    this._refreshSparks();
  }

  private async _loadOlder(): Promise<void> {
    if (this._next === null) {
      return;
    }
    this.more.disabled = true;
    try {
      const page = await api.runs({ limit: PAGE, before: this._next });
      page.runs.forEach(run => this._upsert(run));
      this._next = page.next;
      this._arrange();
    } catch (error) {
      Notification.error(`Could not load older runs: ${(error as Error).message}`);
    } finally {
      this.more.disabled = false;
    }
  }

  private _upsert(run: IRun): void {
    const row = this.rows.get(run.id);
    if (row) {
      row.update(run, this.clock);
    } else {
      const created = new RunRow(run, this);
      created.update(run, this.clock);
      this.rows.set(run.id, created);
      this._io.observe(created.node);
    }
  }

  private _remove(id: string): void {
    const row = this.rows.get(id);
    if (row) {
      this._io.unobserve(row.node);
      row.spark.dispose();
      row.node.remove();
      this.rows.delete(id);
      this.select(id, false);
    }
  }

  /** Run ids newest first. */
  private _ordered(): string[] {
    return Array.from(this.rows.values())
      .sort((a, b) => b.run.created - a.run.created || (a.run.id < b.run.id ? 1 : -1))
      .map(r => r.run.id);
  }

  /** Put rows into experiment groups, newest first; groups by their newest run. */
  private _arrange(): void {
    const byGroup = new Map<string, RunRow[]>();
    for (const id of this._ordered()) {
      const row = this.rows.get(id)!;
      const exp = row.run.experiment || 'default';
      const list = byGroup.get(exp) ?? [];
      list.push(row);
      byGroup.set(exp, list);
    }
    for (const [exp, group] of Array.from(this.groups)) {
      if (!byGroup.has(exp)) {
        group.node.remove();
        this.groups.delete(exp);
      }
    }
    let i = 0;
    for (const [exp, rows] of byGroup) {
      let group = this.groups.get(exp);
      if (!group) {
        group = new Group(exp);
        this.groups.set(exp, group);
      }
      if (this.list.children[i] !== group.node) {
        this.list.insertBefore(group.node, this.list.children[i] ?? null);
      }
      rows.forEach((row, j) => {
        if (group!.body.children[j] !== row.node) {
          group!.body.insertBefore(row.node, group!.body.children[j] ?? null);
        }
      });
      i++;
    }
    this.empty.hidden = this.rows.size > 0;
    this.more.hidden = this._next === null || this._next === undefined;
    this._applyFilter();
  }

  private _applyFilter(): void {
    const filter = this.filter.value.trim().toLowerCase();
    for (const group of this.groups.values()) {
      let shown = 0;
      let total = 0;
      for (const child of Array.from(group.body.children)) {
        const row = this.rows.get((child as HTMLElement).dataset.runId ?? '');
        if (!row) {
          continue;
        }
        total++;
        const match = row.matches(filter);
        row.node.hidden = !match;
        shown += match ? 1 : 0;
      }
      group.node.hidden = shown === 0;
      group.setCount(shown, total);
    }
  }

  /** Fetch sparklines of rows in view whose main metric changed. */
  private _refreshSparks(): void {
    const now = Date.now() / 1000;
    let busy = Array.from(this.rows.values()).filter(r => r.sparkBusy).length;
    for (const row of this.rows.values()) {
      if (busy >= SPARK_PARALLEL) {
        break;
      }
      const stamp = row.wantedStamp;
      const key = row.sparkKey;
      if (!row.visible || row.sparkBusy || !stamp || key === null || stamp === row.sparkStamp) {
        continue;
      }
      if (isActive(row.run.status) && now - row.sparkFetched < SPARK_EVERY_S) {
        continue;
      }
      row.sparkBusy = true;
      busy++;
      row.sparkFetched = now;
      api
        .metrics(row.run.id, { keys: [key], maxPoints: SPARK_POINTS })
        .then(data => {
          row.spark.set(data.series?.[key]?.value ?? []);
          row.sparkStamp = stamp;
        })
        .catch(() => {
          /* retried at the next change */
        })
        .finally(() => {
          row.sparkBusy = false;
        });
    }
  }

  private _tickElapsed(): void {
    if (!this.isVisible) {
      return;
    }
    for (const row of this.rows.values()) {
      if (isActive(row.run.status)) {
        row.update(row.run, this.clock);
      }
    }
  }

  readonly clock = new ServerClock();
  private rows = new Map<string, RunRow>();
  private groups = new Map<string, Group>();
  private filter: HTMLInputElement;
  private compareButton: HTMLButtonElement;
  private list: HTMLElement;
  private empty: HTMLElement;
  private more: HTMLButtonElement;
  private _since: number | null = null;
  private _next: string | number | null = null;
  private _io: IntersectionObserver;
  private _elapsedTimer: number;
}

/** The deployments section: `.jpe-deployment[data-name]` rows with Undeploy. */
export class DeploymentsSection extends PolledSection {
  constructor(state: ApiState) {
    super(state, { name: 'deployments', interval: 3000, max: 60_000 });
    this.addClass('jpe-deployments');
    this.title.label = 'Deployments';
    this.list = h('div', { className: 'jpe-deployments-list' });
    this.empty = h('div', {
      className: 'jpe-empty',
      text: 'No deployments. Serve a model with jupyter_ext.deploy(model) or %%deploy.'
    });
    this.node.append(this.empty, this.list);
  }

  protected async update_(): Promise<void> {
    const deployments = await api.deployments();
    const seen = new Set<string>();
    deployments
      .slice()
      .sort((a, b) => Number(isLiveDeployment(b.status)) - Number(isLiveDeployment(a.status)))
      .forEach((d, i) => {
        seen.add(d.name);
        const key = JSON.stringify([d.status, d.url, d.format, d.engine, d.target, d.error]);
        let row = this.rows.get(d.name);
        if (!row || row.dataset.key !== key) {
          const fresh = this._row(d);
          fresh.dataset.key = key;
          if (row) {
            row.replaceWith(fresh);
          }
          row = fresh;
          this.rows.set(d.name, row);
        }
        if (this.list.children[i] !== row) {
          this.list.insertBefore(row, this.list.children[i] ?? null);
        }
      });
    for (const [name, row] of Array.from(this.rows)) {
      if (!seen.has(name)) {
        row.remove();
        this.rows.delete(name);
      }
    }
    this.empty.hidden = deployments.length > 0;
  }

  private _row(d: IDeployment): HTMLElement {
    const live = isLiveDeployment(d.status);
    const actions: HTMLElement[] = [];
    if (live) {
      const undeploy = h('button', {
        className: 'jpe-undeploy jp-mod-styled jp-mod-warn',
        text: 'Undeploy',
        title: `Stop the server of ${d.name}`
      });
      undeploy.addEventListener('click', () => void this._undeploy(d, undeploy));
      actions.push(undeploy);
    }
    const url = d.url
      ? h('div', { className: 'jpe-deployment-url' }, [
          h('a', {
            text: d.url,
            title: d.url,
            attrs: { href: d.url, target: '_blank', rel: 'noopener' }
          }),
          this._copyButton(d.url)
        ])
      : h('div', { className: 'jpe-deployment-url', text: '' });
    const details = [d.format, d.engine, d.target].filter(Boolean).join(' · ');
    return h(
      'div',
      {
        className: `jpe-deployment${live ? '' : ' jpe-ended'}`,
        attrs: { 'data-name': d.name, 'data-status': d.status }
      },
      [
        h('div', { className: 'jpe-run-line' }, [
          h('span', { className: 'jpe-deployment-name', text: d.name }),
          statusBadge(d.status),
          ...actions
        ]),
        url,
        h('div', {
          className: 'jpe-deployment-details',
          text: `${details}${details ? ' · ' : ''}${formatTime(d.created)}`
        }),
        h('div', { className: 'jpe-run-error', text: d.error ? String(d.error) : '' })
      ]
    );
  }

  private _copyButton(url: string): HTMLElement {
    const button = h('button', {
      className: 'jpe-copy jp-mod-styled',
      text: 'Copy',
      title: 'Copy the URL',
      attrs: { 'aria-label': 'copy URL' }
    });
    button.addEventListener('click', () => {
      Clipboard.copyToSystem(url);
      button.textContent = 'Copied';
      window.setTimeout(() => (button.textContent = 'Copy'), 1500);
    });
    return button;
  }

  private async _undeploy(d: IDeployment, button: HTMLButtonElement): Promise<void> {
    const answer = await showDialog({
      title: `Undeploy ${d.name}?`,
      body: `This stops the server${d.url ? ` at ${d.url}` : ''}.`,
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Undeploy' })]
    });
    if (!answer.button.accept) {
      return;
    }
    button.disabled = true;
    button.textContent = 'Stopping…';
    try {
      await api.undeploy(d.name);
    } catch (error) {
      Notification.error(`Could not undeploy ${d.name}: ${(error as Error).message}`);
      button.disabled = false;
      button.textContent = 'Undeploy';
    }
    void this.poll.refresh();
  }

  private list: HTMLElement;
  private empty: HTMLElement;
  private rows = new Map<string, HTMLElement>();
}

function bar(className: string, fraction: number | null, label: string): HTMLElement {
  const fill = h('div', { className: 'jpe-meter-fill' });
  const f = fraction === null || !Number.isFinite(fraction) ? 0 : Math.max(0, Math.min(1, fraction));
  fill.style.width = `${(f * 100).toFixed(1)}%`;
  return h('div', { className: `jpe-meter ${className}` }, [
    h('div', { className: 'jpe-meter-track' }, [fill]),
    h('span', { className: 'jpe-meter-label', text: label })
  ]);
}

/** The accelerators strip: `.jpe-accelerator` per device, refreshed every second. */
export class AcceleratorsSection extends PolledSection {
  constructor(state: ApiState) {
    super(state, { name: 'accelerators', interval: 1000, max: 30_000 });
    this.addClass('jpe-accelerators');
    this.title.label = 'Accelerators';
    this.list = h('div', { className: 'jpe-accelerators-list' });
    this.missing = h('div', { className: 'jpe-accelerator-missing' });
    this.node.append(this.list, this.missing);
  }

  protected async update_(): Promise<void> {
    const rows = await api.accelerators();
    this._render(rows);
  }

  private _render(rows: IAccelerator[]): void {
    const available = rows.filter(r => r.available);
    const cards = available.map(r => {
      const used = r.memory_used_mb;
      const total = r.memory_total_mb;
      const memFraction = used !== null && total ? used / total : null;
      const util = r.utilization_pct;
      return h(
        'div',
        {
          className: 'jpe-accelerator',
          attrs: { 'data-kind': r.accelerator, 'data-index': String(r.index) },
          title: r.note ?? ''
        },
        [
          h('div', { className: 'jpe-accelerator-name' }, [
            h('span', { className: 'jpe-accelerator-kind', text: `${r.accelerator}:${r.index}` }),
            h('span', { text: r.name })
          ]),
          bar(
            'jpe-memory',
            memFraction,
            `mem ${formatMB(used)} / ${formatMB(total)}`
          ),
          bar(
            'jpe-utilization',
            util === null ? null : util / 100,
            util === null || !Number.isFinite(util) ? 'util –' : `util ${Math.round(util)}%`
          )
        ]
      );
    });
    this.list.replaceChildren(...cards);
    const absent = rows.filter(r => !r.available);
    this.missing.replaceChildren(
      ...(absent.length
        ? [
            h('span', { text: 'not here: ' }),
            ...absent.map((r, i) =>
              h('span', {
                className: 'jpe-accelerator-absent',
                text: `${r.accelerator}${i < absent.length - 1 ? ', ' : ''}`,
                title: r.note ?? ''
              })
            )
          ]
        : [])
    );
  }

  private list: HTMLElement;
  private missing: HTMLElement;
}

/** The sidebar: the three sections, and one message when the API is not there. */
export class RunsSidebar extends SidePanel {
  constructor(options: { commands: CommandRegistry; state: ApiState }) {
    super();
    this.id = 'jupyter-ext-sidebar';
    this.addClass('jpe-sidebar');
    this.title.icon = runsIcon;
    this.title.caption = 'Runs';
    this.title.label = '';
    this.state = options.state;
    const refresh = new ToolbarButton({
      icon: refreshIcon,
      tooltip: 'Reload runs, deployments and accelerators',
      onClick: () => {
        this.runs.reload();
        void this.deployments.refresh();
        void this.accelerators.refresh();
      }
    });
    refresh.addClass('jpe-refresh');
    const heading = new Widget({
      node: h('div', { className: 'jpe-sidebar-heading' }, [
        h('h2', { className: 'jpe-sidebar-title', text: 'Runs' })
      ])
    });
    this.header.addWidget(heading);
    this.header.addWidget(refresh);
    this.header.addClass('jpe-sidebar-header');
    this.missing = new Widget({ node: h('div', { className: 'jpe-missing' }) });
    this.missing.hide();
    this.header.addWidget(this.missing);

    this.runs = new RunsSection(options.state, options.commands);
    this.deployments = new DeploymentsSection(options.state);
    this.accelerators = new AcceleratorsSection(options.state);
    this.addWidget(this.runs);
    this.addWidget(this.deployments);
    this.addWidget(this.accelerators);
    this.toolbar.hide();
    // The runs get most of the height; the strip of devices the least.
    (this.content as AccordionPanel).setRelativeSizes([0.62, 0.2, 0.18]);
    this.state.changed.connect(this._onState, this);
  }

  readonly runs: RunsSection;
  readonly deployments: DeploymentsSection;
  readonly accelerators: AcceleratorsSection;

  private _onState(): void {
    const away = this.state.available === false;
    // `commands` in the message read as code
    this.missing.node.replaceChildren(
      ...(away ? this.state.message : '')
        .split('`')
        .map((part, i) => (i % 2 ? h('code', { text: part }) : document.createTextNode(part)))
    );
    this.missing.setHidden(!away);
    this.toggleClass('jpe-api-missing', away);
  }

  private state: ApiState;
  private missing: Widget;
}
