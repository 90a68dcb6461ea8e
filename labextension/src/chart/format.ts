// How numbers and x values read on axes, in legends and in the hover readout.

export type XFormat = 'number' | 'time' | 'duration';

/** 4 significant digits, k/M for large values, exponent for tiny ones. */
export function fmtNum(v: number | null | undefined): string {
  if (v === null || v === undefined || Number.isNaN(v)) {
    return '–';
  }
  if (!Number.isFinite(v)) {
    return v > 0 ? '∞' : '-∞';
  }
  const a = Math.abs(v);
  if (a === 0) {
    return '0';
  }
  if (a >= 1e6) {
    return `${+(v / 1e6).toPrecision(3)}M`;
  }
  if (a >= 1e4) {
    return `${+(v / 1e3).toPrecision(3)}k`;
  }
  if (a < 1e-3) {
    return v.toExponential(2);
  }
  return `${+v.toPrecision(4)}`;
}

const pad = (k: number): string => String(k).padStart(2, '0');

/** h:mm:ss (or m:ss) for a number of seconds. */
export function fmtDuration(seconds: number): string {
  const s = Math.round(Math.abs(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sign = seconds < 0 ? '-' : '';
  return h ? `${sign}${h}:${pad(m)}:${pad(s % 60)}` : `${sign}${m}:${pad(s % 60)}`;
}

/** An x value as the axis reads: a step or epoch, a clock time, or a duration. */
export function fmtX(v: number, kind: XFormat): string {
  if (kind === 'time') {
    const d = new Date(v * 1000);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  if (kind === 'duration') {
    return fmtDuration(v);
  }
  return fmtNum(v);
}

/** Tick spacings for integer x (steps): never a 0.25 tick on a short run. */
export const INTEGER_INCRS = Array.from(
  { length: 30 },
  (_, i) => [1, 2, 5][i % 3] * 10 ** Math.floor(i / 3)
);

/** Tick spacings for durations in seconds: whole seconds, minutes and hours. */
export const DURATION_INCRS = [
  1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
  172800, 604800
];

const alphaCache = new Map<string, string>();

/** A CSS colour with an alpha, whatever notation it came in. */
export function withAlpha(color: string, alpha: number): string {
  const key = `${color}|${alpha}`;
  let out = alphaCache.get(key);
  if (out === undefined) {
    out = parseWithAlpha(color, alpha);
    alphaCache.set(key, out);
  }
  return out;
}

function parseWithAlpha(color: string, alpha: number): string {
  const hex = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(color.trim());
  let rgb: number[] | null = null;
  if (hex) {
    const h = hex[1].length === 3 ? hex[1].replace(/./g, c => c + c) : hex[1];
    rgb = [0, 2, 4].map(i => parseInt(h.slice(i, i + 2), 16));
  } else if (typeof document !== 'undefined') {
    // Let the browser parse names and rgb(): a canvas normalises fillStyle to #rrggbb.
    const ctx = document.createElement('canvas').getContext('2d');
    if (ctx) {
      ctx.fillStyle = color;
      const norm = String(ctx.fillStyle);
      return norm.startsWith('#') ? parseWithAlpha(norm, alpha) : norm;
    }
  }
  return rgb ? `rgba(${rgb.join(',')},${alpha})` : color;
}

export function escapeHtml(s: string): string {
  return String(s).replace(/[&<>"']/g, c => `&#${c.charCodeAt(0)};`);
}
