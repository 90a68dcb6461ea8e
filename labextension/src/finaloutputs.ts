// A finished run's monitor, saved with the notebook. The monitor is a widget: it needs
// the kernel that made it, so a notebook opened later would say "Error displaying widget:
// model not found". When the notebook is saved, each monitor whose run has ended (DOM class
// jupyter-ext-ended) is copied into its output as static HTML beside the widget, charts as
// images, controls left out, marked {"jupyter_ext": {"final": true}}. When a notebook is
// opened, those outputs show that copy instead of the widget. nbconvert, GitHub and other
// front ends read the copy directly.

import { JupyterFrontEnd } from '@jupyterlab/application';

const WIDGET_MIME = 'application/vnd.jupyter.widget-view+json';
const HTML_MIME = 'text/html';

// The parts of a notebook panel used here, by duck typing (no @jupyterlab/notebook).
interface IOutputJSON {
  data?: Record<string, unknown>;
  metadata?: Record<string, unknown>;
  [key: string]: unknown;
}
interface IOutputLike {
  data: Record<string, unknown>;
  metadata: Record<string, unknown>;
  toJSON(): IOutputJSON;
}
interface IOutputsLike {
  length: number;
  get(index: number): IOutputLike;
  set(index: number, value: IOutputJSON): void;
}
interface ICellWidgetLike {
  outputArea?: { model: IOutputsLike; widgets: readonly { node: HTMLElement }[] };
}
interface ICellModelLike {
  outputs?: IOutputsLike;
}
interface IPanelLike {
  context: {
    ready: Promise<void>;
    saveState: { connect(fn: (sender: unknown, state: string) => void): void };
  };
  content: {
    widgets: readonly ICellWidgetLike[];
    model: { cells?: { length: number; get(index: number): ICellModelLike } } | null;
  };
}

function isNotebookPanel(widget: unknown): widget is IPanelLike {
  const w = widget as Partial<IPanelLike> | null;
  return (
    !!w &&
    !!w.context &&
    typeof w.context.ready?.then === 'function' &&
    typeof w.context.saveState?.connect === 'function' &&
    !!w.content &&
    Array.isArray((w.content as { widgets?: unknown }).widgets)
  );
}

function isFinal(output: IOutputLike): boolean {
  const meta = output.metadata?.jupyter_ext as { final?: boolean } | undefined;
  return meta?.final === true && WIDGET_MIME in output.data && HTML_MIME in output.data;
}

const INLINE: [string, string][] = [
  ['.jxc-grid', 'display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:10px 14px'],
  ['.jxc-title', 'font-weight:600;margin:2px 0 2px 4px'],
  ['.jxc-legend', 'display:flex;flex-wrap:wrap;gap:2px 12px;margin:2px 4px'],
  ['.jxc-swatch', 'display:inline-block;width:14px;height:3px;vertical-align:middle;margin-right:4px'],
  ['.jxc-note', 'font-size:11px;opacity:0.7;margin:0 4px']
];

/** A static copy of a rendered view: canvases as images, nothing that needs a kernel. */
export function staticCopy(view: HTMLElement): string {
  const clone = view.cloneNode(true) as HTMLElement;
  const from = Array.from(view.querySelectorAll('canvas'));
  Array.from(clone.querySelectorAll('canvas')).forEach((canvas, i) => {
    const source = from[i];
    const img = document.createElement('img');
    img.alt = 'chart';
    img.src = source.toDataURL('image/png');
    img.width = source.clientWidth || source.width;
    img.height = source.clientHeight || source.height;
    canvas.replaceWith(img);
  });
  const gone = [
    '.jxc-toolbar',
    '.jxc-tip',
    '.jupyter-ext-live-only',
    '.jupyter-ext-restart-hint',
    '.u-cursor-x',
    '.u-cursor-y',
    '.u-cursor-pt',
    '.u-select',
    'button',
    'input',
    'select',
    'style',
    'script'
  ];
  clone.querySelectorAll(gone.join(',')).forEach(el => el.remove());
  // Where the chart's stylesheet is absent (nbconvert, GitHub), inline what layout needs.
  for (const [selector, css] of INLINE) {
    clone.querySelectorAll<HTMLElement>(selector).forEach(el => {
      el.style.cssText = `${css};${el.style.cssText}`;
    });
  }
  return `<div class="jupyter-ext-saved">${clone.outerHTML}</div>`;
}

/** Before a save: copy each ended monitor into its output (once per change). */
export function keepFinalStates(panel: IPanelLike): number {
  let kept = 0;
  for (const cell of panel.content.widgets) {
    const area = cell.outputArea;
    if (!area) {
      continue;
    }
    for (let j = 0; j < area.model.length; j++) {
      const output = area.model.get(j);
      const view = area.widgets[j]?.node.querySelector<HTMLElement>(
        '.jupyter-ext-view.jupyter-ext-ended'
      );
      if (!(WIDGET_MIME in output.data) || !view) {
        continue;
      }
      const html = staticCopy(view);
      if (output.data[HTML_MIME] === html) {
        continue;
      }
      const json = output.toJSON();
      area.model.set(j, {
        ...json,
        data: { ...(json.data ?? {}), [HTML_MIME]: html },
        metadata: { ...(json.metadata ?? {}), jupyter_ext: { final: true } }
      });
      kept++;
    }
  }
  return kept;
}

/** As a notebook opens: outputs with a kept final state show it, not a dead widget. */
export function showFinalStates(panel: IPanelLike): number {
  const cells = panel.content.model?.cells;
  let shown = 0;
  for (let i = 0; cells && i < cells.length; i++) {
    const outputs = cells.get(i).outputs;
    for (let j = 0; outputs && j < outputs.length; j++) {
      const output = outputs.get(j);
      if (isFinal(output)) {
        const json = output.toJSON();
        const data = { ...(json.data ?? {}) };
        delete data[WIDGET_MIME];
        outputs.set(j, { ...json, data });
        shown++;
      }
    }
  }
  return shown;
}

/** Watch the main area's notebooks: keep final states on save, show them on open. */
export function watchNotebooks(app: JupyterFrontEnd): void {
  const seen = new WeakSet<object>();
  const scan = (): void => {
    for (const widget of Array.from(app.shell.widgets('main'))) {
      if (seen.has(widget) || !isNotebookPanel(widget)) {
        continue;
      }
      seen.add(widget);
      const panel = widget;
      void panel.context.ready.then(() => showFinalStates(panel));
      panel.context.saveState.connect((_sender, state) => {
        if (state === 'started') {
          keepFinalStates(panel);
        }
      });
    }
  };
  void app.restored.then(scan);
  const shell = app.shell as unknown as {
    layoutModified?: { connect(fn: () => void): void };
    currentChanged?: { connect(fn: () => void): void };
  };
  shell.layoutModified?.connect(scan);
  shell.currentChanged?.connect(scan);
}
