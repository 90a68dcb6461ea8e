// The REST API of the jupyter_ext server extension, in one place: its types and one
// function per route. Every request goes through ServerConnection (base URL, token,
// XSRF and proxies handled by JupyterLab), never a raw fetch.
//
// Routes, under {base_url}/jupyter-ext/api/ (errors are JSON {"error": "..."} with a 4xx):
//   GET    runs?experiment=&status=&limit=&before=&since=   -> IRunList
//   GET    runs/{id}                                        -> IRunDetail
//   GET    runs/{id}/metrics?keys=&after=&max_points=       -> IMetrics
//   GET    runs/{id}/logs?tail=                             -> ILogs
//   POST   runs/{id}/stop                                   -> 202 {status}
//   GET    deployments                                      -> {deployments}
//   DELETE deployments/{name}
//   GET    accelerators                                     -> {accelerators}

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** Where the server extension mounts its API, relative to the server's base URL. */
export const API_ROOT = 'jupyter-ext/api';

/** Run statuses as the store records them. */
export type RunStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'stopped' | 'lost';

export const RUN_STATUSES: RunStatus[] = [
  'queued',
  'running',
  'succeeded',
  'failed',
  'stopped',
  'lost'
];

/** Whether a run with this status may still change (and can be stopped). */
export function isActive(status: string): boolean {
  return status === 'queued' || status === 'running';
}

export interface IProgress {
  epoch: number | null;
  step: number | null;
  total_steps: number | null;
  /** 0..1, or null while the run's length is unknown. */
  fraction: number | null;
  eta_s: number | null;
}

/** One run as the list route returns it. Times are Unix seconds. */
export interface IRun {
  id: string;
  name: string;
  experiment: string;
  status: RunStatus | string;
  progress: IProgress;
  /** "epoch 15/15 · step 225/225" (epochs from 1), as the notebook's monitor reads. */
  position?: string;
  /** Each metric's colour, as the notebook's monitor draws it (train/val share a hue). */
  colors?: Record<string, string>;
  created: number;
  started: number | null;
  ended: number | null;
  duration_s: number | null;
  accelerator: string | null;
  devices: unknown;
  hparams: Record<string, unknown> | null;
  launcher: string | null;
  pid: number | null;
  host: string | null;
  /** The latest value of every logged metric (null for a non-finite value). */
  metrics: Record<string, number | null>;
  /** What went wrong with a failed run, in one line (`error_line` from the server). */
  error: string | null;
  error_line?: string | null;
  /** When the store last changed the run. */
  updated?: number | null;
}

/** One run as runs/{id} returns it: the list item plus details. */
export interface IRunDetail extends IRun {
  log_every_n_steps: number | null;
  best_checkpoint: string | null;
  last_checkpoint: string | null;
  /** The full traceback of a failed run. */
  error: string | null;
  /** Every metric key the run logged (`metric_keys` from the server). */
  keys: string[];
}

export interface IRunList {
  runs: IRun[];
  /** The server's clock: pass it as the next request's `since`. */
  now: number;
  /** A cursor for older runs (`before`), or null when there are none. */
  next: string | number | null;
}

export interface ISeries {
  step: (number | null)[];
  epoch: (number | null)[];
  time: (number | null)[];
  value: (number | null)[];
}

export interface IMetrics {
  /** Points per key (`metrics` from the server). */
  series: Record<string, ISeries>;
  /** The newest chunk read: pass it as the next request's `after`. */
  last: number | string | null;
}

export interface IDeployment {
  name: string;
  target: string;
  url: string | null;
  status: string;
  format: string | null;
  engine: string | null;
  created: number;
  run_id?: string | null;
  error?: string | null;
  [key: string]: unknown;
}

/** Deployments that serve (or are about to): the ones Undeploy applies to. */
export function isLiveDeployment(status: string): boolean {
  return status === 'running' || status === 'starting';
}

/** A row of `jupyter_ext.accelerators()`. */
export interface IAccelerator {
  /** cpu, cuda, mps, ... (`kind` accepted too). */
  accelerator: string;
  index: number;
  name: string;
  available: boolean;
  memory_total_mb: number | null;
  memory_used_mb: number | null;
  utilization_pct: number | null;
  note: string | null;
}

/** The API said no: a 4xx/5xx with a message. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** The API is not there: the server extension is not enabled, or the server is down. */
export class ApiUnavailable extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ApiUnavailable';
  }
}

export const NOT_ENABLED =
  'The jupyter_ext server extension is not enabled: run ' +
  '`jupyter server extension enable jupyter_ext.server` and restart JupyterLab.';

export const UNREACHABLE =
  'The Jupyter server cannot be reached (retrying). If it is running, the jupyter_ext ' +
  'server extension may not be enabled: run ' +
  '`jupyter server extension enable jupyter_ext.server` and restart JupyterLab.';

type Query = Record<string, string | number | null | undefined>;

let _settings: ServerConnection.ISettings | null = null;

function settings(): ServerConnection.ISettings {
  if (_settings === null) {
    _settings = ServerConnection.makeSettings();
  }
  return _settings;
}

/** The URL of an API route, with the query's non-empty values. */
export function apiUrl(path: string, query: Query = {}): string {
  const url = URLExt.join(settings().baseUrl, API_ROOT, path);
  const params: Record<string, string> = {};
  for (const [key, value] of Object.entries(query)) {
    if (value !== null && value !== undefined && value !== '') {
      params[key] = String(value);
    }
  }
  return Object.keys(params).length ? url + URLExt.objectToQueryString(params) : url;
}

/**
 * Call an API route and return its JSON.
 *
 * Throws ApiError for an answer with an error, ApiUnavailable when the API is not
 * there (a 404 that is not the API's own JSON error, or no answer at all).
 */
export async function requestAPI<T>(
  path: string,
  init: RequestInit = {},
  query: Query = {}
): Promise<T> {
  let response: Response;
  // Not 'no-store' (ServerConnection's default), for which it appends a cache-busting
  // `?<timestamp>` parameter to every GET; 'no-cache' revalidates every time as well.
  const request: RequestInit = { cache: 'no-cache', ...init };
  try {
    response = await ServerConnection.makeRequest(apiUrl(path, query), request, settings());
  } catch (error) {
    throw new ApiUnavailable(UNREACHABLE);
  }
  const text = await response.text();
  let data: any = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const ours = data !== null && typeof data === 'object' && typeof data.error === 'string';
    if (response.status === 404 && !ours) {
      // Jupyter's own answer for an unknown route: nothing is mounted at API_ROOT (the
      // extension answers every path under it, unknown ones too, with {"error": ...}).
      throw new ApiUnavailable(NOT_ENABLED);
    }
    const message = ours ? data.error : (data?.message ?? null);
    throw new ApiError(
      message ?? `${response.status} ${response.statusText || 'error'}`,
      response.status
    );
  }
  return data as T;
}

/** The first line that says what went wrong (a traceback's last line). */
export function errorLine(error: string | null | undefined): string | null {
  if (!error) {
    return null;
  }
  const lines = error
    .trim()
    .split('\n')
    .map(l => l.trim())
    .filter(Boolean);
  if (!lines.length) {
    return null;
  }
  return lines[0].startsWith('Traceback') ? lines[lines.length - 1] : lines[0];
}

function normalizeRun<T extends IRun>(run: T): T {
  run.metrics = run.metrics ?? {};
  run.error_line = run.error_line ?? errorLine(run.error);
  run.error = run.error ?? run.error_line ?? null;
  run.progress = run.progress ?? {
    epoch: null,
    step: null,
    total_steps: null,
    fraction: null,
    eta_s: null
  };
  return run;
}

function normalizeAccelerator(row: any): IAccelerator {
  return {
    ...row,
    accelerator: row.accelerator ?? row.kind ?? '?',
    available: row.available !== false,
    note: row.note ?? null
  } as IAccelerator;
}

export interface IRunsQuery {
  experiment?: string;
  status?: string;
  limit?: number;
  before?: string | number | null;
  since?: number | null;
}

/** One function per route. */
export const api = {
  async runs(query: IRunsQuery = {}): Promise<IRunList> {
    const data = await requestAPI<IRunList>('runs', {}, { ...query });
    data.runs = (data.runs ?? []).map(normalizeRun);
    return data;
  },

  async run(id: string): Promise<IRunDetail> {
    const data = await requestAPI<any>(`runs/${encodeURIComponent(id)}`);
    data.keys = data.keys ?? data.metric_keys ?? Object.keys(data.metrics ?? {});
    return normalizeRun(data as IRunDetail);
  },

  async metrics(
    id: string,
    options: { keys?: string[]; after?: number | string | null; maxPoints?: number } = {}
  ): Promise<IMetrics> {
    const data = await requestAPI<any>(
      `runs/${encodeURIComponent(id)}/metrics`,
      {},
      {
        keys: options.keys?.join(','),
        after: options.after,
        max_points: options.maxPoints
      }
    );
    return { series: data.series ?? data.metrics ?? {}, last: data.last ?? null };
  },

  logs(id: string, tail = 200): Promise<{ text: string }> {
    return requestAPI<{ text: string }>(`runs/${encodeURIComponent(id)}/logs`, {}, { tail });
  },

  stop(id: string): Promise<{ status: string }> {
    return requestAPI<{ status: string }>(`runs/${encodeURIComponent(id)}/stop`, {
      method: 'POST'
    });
  },

  async deployments(): Promise<IDeployment[]> {
    const data = await requestAPI<{ deployments: IDeployment[] }>('deployments');
    return data.deployments ?? [];
  },

  undeploy(name: string): Promise<unknown> {
    return requestAPI<unknown>(`deployments/${encodeURIComponent(name)}`, {
      method: 'DELETE'
    });
  },

  async accelerators(): Promise<IAccelerator[]> {
    const data = await requestAPI<{ accelerators: any[] }>('accelerators');
    return (data.accelerators ?? []).map(normalizeAccelerator);
  }
};
