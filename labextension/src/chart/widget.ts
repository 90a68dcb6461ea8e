// The anywidget front end of jupyter_ext.widgets.chart.LiveChart: the kernel's traits and
// messages drive a ChartGrid. Bundled with uPlot into one ES module inside the Python
// package (scripts/build-widget.js), so nothing is fetched at run time.

import { ChartGrid, IChartOptions, ISeriesMeta } from './grid';
import { XFormat } from './format';
import { IMessage } from './series';
import UPLOT_CSS from './uplot-css';

interface IModel {
  get(name: string): any;
  set(name: string, value: unknown): void;
  save_changes(): void;
  send(content: unknown): void;
  on(event: string, callback: (...args: any[]) => void): void;
  off(event: string, callback: (...args: any[]) => void): void;
}

const TRAITS: Record<string, keyof IChartOptions> = {
  x_label: 'xLabel',
  x_format: 'xFormat',
  log_y: 'logY',
  smoothing: 'smoothing',
  height: 'height',
  x_choices: 'xChoices',
  x_axis: 'xAxis',
  align_runs: 'runs'
};
const BACK: Partial<Record<keyof IChartOptions, string>> = {
  logY: 'log_y',
  smoothing: 'smoothing',
  xAxis: 'x_axis'
};

function options(model: IModel): Partial<IChartOptions> {
  return {
    xLabel: String(model.get('x_label') ?? 'step'),
    xFormat: (model.get('x_format') ?? 'number') as XFormat,
    logY: Boolean(model.get('log_y')),
    smoothing: Number(model.get('smoothing') ?? 0),
    height: Number(model.get('height') ?? 220),
    xChoices: (model.get('x_choices') ?? []) as [string, string][],
    xAxis: String(model.get('x_axis') ?? ''),
    runs: Boolean(model.get('align_runs'))
  };
}

function render({ model, el }: { model: IModel; el: HTMLElement }): () => void {
  if (!document.getElementById('jupyter-ext-uplot-style')) {
    const style = document.createElement('style');
    style.id = 'jupyter-ext-uplot-style';
    style.textContent = UPLOT_CSS;
    document.head.appendChild(style);
  }
  // Read the container's width before the chart's DOM is in it: one layout, not two.
  const hostWidth = el.clientWidth;
  const chart = new ChartGrid({ ...options(model), toolbar: model.get('toolbar') !== false });
  chart.setHostWidth(hostWidth);
  el.appendChild(chart.node);
  chart.setPanels(model.get('panels') ?? []);
  chart.setSeries((model.get('series') ?? []) as ISeriesMeta[]);
  chart.setNotes(model.get('notes') ?? {});
  chart.onOptionChange = (name, value) => {
    const trait = BACK[name];
    if (trait) {
      model.set(trait, value);
      model.save_changes();
    }
  };

  const onMsg = (content: IMessage, buffers: DataView[] = []): void => {
    const applied = chart.store.apply(content, buffers);
    if (applied) {
      chart.invalidate(applied.all ? undefined : applied.changed);
    }
  };
  const onOptions = (): void => chart.setOptions(options(model));
  const onPanels = (): void => chart.setPanels(model.get('panels') ?? []);
  const onSeries = (): void => chart.setSeries(model.get('series') ?? []);
  const onNotes = (): void => chart.setNotes(model.get('notes') ?? {});
  const optionEvents = Object.keys(TRAITS)
    .map(t => `change:${t}`)
    .join(' ');
  model.on('msg:custom', onMsg);
  model.on(optionEvents, onOptions);
  model.on('change:panels', onPanels);
  model.on('change:series', onSeries);
  model.on('change:notes', onNotes);
  // Everything sent before this view existed comes in the snapshot it asks for.
  model.send({ type: 'snapshot' });
  return () => {
    model.off('msg:custom', onMsg);
    model.off(optionEvents, onOptions);
    model.off('change:panels', onPanels);
    model.off('change:series', onSeries);
    model.off('change:notes', onNotes);
    chart.dispose();
  };
}

export default { render };
