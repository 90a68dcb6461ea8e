// jupyter-ext in JupyterLab: a "Runs" sidebar over the server extension's REST API, and
// main-area panels for a run (jupyter-ext:open-run {id}) and a comparison
// (jupyter-ext:compare {ids}), restored with the layout after a reload.

import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  IThemeManager,
  MainAreaWidget,
  WidgetTracker
} from '@jupyterlab/apputils';

import { ensureChartStyle, restyleCharts } from './chart';
import { ComparePanel } from './compare';
import { watchNotebooks } from './finaloutputs';
import { runsIcon } from './icons';
import { RunPanel } from './runpanel';
import { CommandIDs, RunsSidebar } from './sidebar';
import { ApiState } from './state';

const PLUGIN_ID = 'jupyter-ext-labextension:plugin';

function compareKey(ids: string[]): string {
  return ids.join(',');
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Runs, comparisons, deployments and accelerators of jupyter-ext.',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette, IThemeManager],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null,
    themes: IThemeManager | null
  ) => {
    const { commands, shell } = app;
    const state = new ApiState();

    const runs = new WidgetTracker<MainAreaWidget<RunPanel>>({ namespace: 'jupyter-ext-run' });
    const comparisons = new WidgetTracker<MainAreaWidget<ComparePanel>>({
      namespace: 'jupyter-ext-compare'
    });

    commands.addCommand(CommandIDs.openRun, {
      label: args => (args.id ? `Open Run ${args.id}` : 'Open Run'),
      caption: 'Open a training run in the main area',
      icon: runsIcon,
      execute: async args => {
        const id = String(args.id ?? '');
        if (!id) {
          return null;
        }
        const open = runs.find(w => w.content.runId === id);
        if (open) {
          shell.activateById(open.id);
          return open;
        }
        const widget = new MainAreaWidget({ content: new RunPanel(id, state) });
        widget.id = `jupyter-ext-run-${id}`;
        widget.addClass('jpe-run-panel-widget');
        widget.title.icon = runsIcon;
        await runs.add(widget);
        shell.add(widget, 'main');
        shell.activateById(widget.id);
        return widget;
      }
    });

    commands.addCommand(CommandIDs.compare, {
      label: 'Compare Runs',
      caption: 'Compare training runs in the main area',
      icon: runsIcon,
      execute: async args => {
        const ids = ((args.ids as string[] | undefined) ?? []).map(String).filter(Boolean);
        if (ids.length === 0) {
          return null;
        }
        const key = compareKey(ids);
        const open = comparisons.find(w => compareKey(w.content.runIds) === key);
        if (open) {
          shell.activateById(open.id);
          return open;
        }
        const widget = new MainAreaWidget({ content: new ComparePanel(ids, state) });
        widget.id = `jupyter-ext-compare-${Date.now().toString(36)}`;
        widget.addClass('jpe-compare-panel-widget');
        widget.title.icon = runsIcon;
        await comparisons.add(widget);
        shell.add(widget, 'main');
        shell.activateById(widget.id);
        return widget;
      }
    });

    const sidebar = new RunsSidebar({ commands, state });
    shell.add(sidebar, 'left', { rank: 650 });

    commands.addCommand(CommandIDs.showSidebar, {
      label: 'Show Runs Sidebar',
      caption: 'Runs, deployments and accelerators of jupyter-ext',
      icon: runsIcon,
      execute: () => shell.activateById(sidebar.id)
    });
    if (palette) {
      palette.addItem({ command: CommandIDs.showSidebar, category: 'jupyter-ext' });
    }

    if (restorer) {
      restorer.add(sidebar, 'jupyter-ext-sidebar');
      void restorer.restore(runs, {
        command: CommandIDs.openRun,
        args: w => ({ id: w.content.runId }),
        name: w => w.content.runId
      });
      void restorer.restore(comparisons, {
        command: CommandIDs.compare,
        args: w => ({ ids: w.content.runIds }),
        name: w => compareKey(w.content.runIds)
      });
    }

    // Saved notebooks: a finished run's monitor shows its final state without its kernel.
    ensureChartStyle(); // also for kept copies of charts, before any chart is drawn
    watchNotebooks(app);

    if (themes) {
      themes.themeChanged.connect(() => {
        // The theme's CSS is in place once the change is announced; charts read it.
        requestAnimationFrame(() => restyleCharts());
      });
    }
  }
};

export default plugin;
