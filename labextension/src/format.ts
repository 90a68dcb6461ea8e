// Small pure helpers: how numbers, times and metric names are shown.

/** "12s", "3m 05s", "1h 02m", "2d 03h"; "–" when unknown. */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) {
    return '–';
  }
  const s = Math.max(0, Math.round(seconds));
  const pad = (n: number) => String(n).padStart(2, '0');
  if (s < 60) {
    return `${s}s`;
  }
  if (s < 3600) {
    return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  }
  if (s < 86400) {
    return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
  }
  return `${Math.floor(s / 86400)}d ${pad(Math.floor((s % 86400) / 3600))}h`;
}

/** A metric value with 4 significant digits; "–" for none, "nan" for non-finite. */
export function formatValue(value: number | null | undefined): string {
  if (value === null || value === undefined) {
    return '–';
  }
  if (!Number.isFinite(value)) {
    return String(value).toLowerCase();
  }
  const abs = Math.abs(value);
  if (abs !== 0 && (abs >= 1e5 || abs < 1e-3)) {
    return value.toExponential(2);
  }
  return String(Number(value.toPrecision(4)));
}

/** A Unix time as local date and time, e.g. "2026-12-02 07:15:03". */
export function formatTime(unix: number | null | undefined): string {
  if (unix === null || unix === undefined || !Number.isFinite(unix)) {
    return '–';
  }
  const d = new Date(unix * 1000);
  const pad = (n: number) => String(n).padStart(2, '0');
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

/** Megabytes as "512 MB" or "7.8 GB". */
export function formatMB(mb: number | null | undefined): string {
  if (mb === null || mb === undefined || !Number.isFinite(mb)) {
    return '–';
  }
  return mb >= 1024 ? `${(mb / 1024).toFixed(1)} GB` : `${Math.round(mb)} MB`;
}

/** What devices a run uses: "cpu ×2", "cuda [0, 1]". */
export function formatDevices(accelerator: string | null, devices: unknown): string {
  const acc = accelerator ?? '';
  if (devices === null || devices === undefined || devices === '' || devices === 'auto') {
    return acc;
  }
  if (typeof devices === 'number') {
    return devices === 1 ? acc : `${acc} ×${devices}`;
  }
  return `${acc} ${Array.isArray(devices) ? `[${devices.join(', ')}]` : String(devices)}`;
}

/**
 * The metric a run is summed up by: val_loss if logged, else the first loss-like key,
 * else the first key (keys in sorted order).
 */
export function mainMetric(keys: Iterable<string>): string | null {
  const sorted = Array.from(keys).sort();
  if (sorted.includes('val_loss')) {
    return 'val_loss';
  }
  const lossy = sorted.filter(k => /loss/i.test(k));
  // An epoch aggregate is smoother than per-step values; a plain name beats both.
  const plain = lossy.find(k => !/_(step|epoch)$/.test(k));
  return plain ?? lossy.find(k => k.endsWith('_epoch')) ?? lossy[0] ?? sorted[0] ?? null;
}

const PREFIXES = ['train_', 'val_', 'valid_', 'validation_', 'test_', 'train/', 'val/', 'test/'];
const SUFFIXES = ['_step', '_epoch'];

/**
 * The chart panel a metric joins: train_loss, val_loss, train_loss_epoch -> "loss".
 * The same rule as jupyter_ext.metric_names.panel_of, so the lab and the notebook agree.
 */
export function panelOf(key: string): string {
  let name = key;
  for (const p of PREFIXES) {
    if (name.startsWith(p)) {
      name = name.slice(p.length);
      break;
    }
  }
  for (const s of SUFFIXES) {
    if (name.endsWith(s)) {
      name = name.slice(0, -s.length);
      break;
    }
  }
  return name || key;
}

/** Keys grouped by panel, panels in first-seen order of the sorted keys ("loss" first). */
export function groupByPanel(keys: Iterable<string>): Map<string, string[]> {
  const groups = new Map<string, string[]>();
  const sorted = Array.from(keys).sort();
  for (const key of sorted) {
    const panel = panelOf(key);
    const list = groups.get(panel) ?? [];
    list.push(key);
    groups.set(panel, list);
  }
  const loss = groups.get('loss');
  if (loss) {
    groups.delete('loss');
    return new Map([['loss', loss], ...groups]);
  }
  return groups;
}

/** Create an element with classes, attributes and text in one call. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: {
    className?: string;
    text?: string;
    title?: string;
    attrs?: Record<string, string>;
  } = {},
  children: (Node | string)[] = []
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (props.className) {
    el.className = props.className;
  }
  if (props.text !== undefined) {
    el.textContent = props.text;
  }
  if (props.title !== undefined) {
    el.title = props.title;
  }
  for (const [k, v] of Object.entries(props.attrs ?? {})) {
    el.setAttribute(k, v);
  }
  for (const child of children) {
    el.append(child);
  }
  return el;
}

/** A status badge: `.jpe-run-status.jpe-status-<status>` with the status as text. */
export function statusBadge(status: string): HTMLSpanElement {
  const el = h('span', { className: 'jpe-run-status' });
  setStatus(el, status);
  return el;
}

export function setStatus(el: HTMLElement, status: string): void {
  if (el.dataset.status === status) {
    return;
  }
  el.className = `jpe-run-status jpe-status-${status.replace(/[^a-z-]/gi, '')}`;
  el.dataset.status = status;
  el.textContent = status;
}

/** Set text only when it changed (keeps selections and avoids layout work). */
export function setText(el: HTMLElement, text: string): void {
  if (el.textContent !== text) {
    el.textContent = text;
  }
}
