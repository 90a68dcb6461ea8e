// The chart's own CSS (uPlot's comes with uPlot): JupyterLab's theme variables with
// fallbacks, so it reads in Notebook 7, VS Code and a bare page too.

export const CHART_CSS = `
.jupyter-ext-chart { font: 12px var(--jp-ui-font-family, sans-serif);
  color: var(--jp-ui-font-color1, #222); width: 100%; }
.jupyter-ext-chart .jxc-toolbar { display: flex; flex-wrap: wrap; align-items: center;
  gap: 4px 14px; margin: 2px 4px 6px; color: var(--jp-ui-font-color1, #222); }
.jupyter-ext-chart .jxc-toolbar[hidden] { display: none; }
.jupyter-ext-chart .jxc-control { display: inline-flex; align-items: center; gap: 4px;
  cursor: pointer; }
.jupyter-ext-chart .jxc-smooth { width: 110px; }
.jupyter-ext-chart .jxc-smooth-value { font-variant-numeric: tabular-nums; min-width: 2.5em; }
.jupyter-ext-chart .jxc-button { font: inherit; padding: 1px 8px; cursor: pointer;
  color: var(--jp-ui-font-color1, #222); background: var(--jp-layout-color2, #eee);
  border: 1px solid var(--jp-border-color1, #bbb); border-radius: 3px; }
.jupyter-ext-chart .jxc-button[hidden], .jupyter-ext-chart select[hidden] { display: none; }
.jupyter-ext-chart .jxc-hint { color: var(--jp-ui-font-color3, #999); font-size: 11px; }
.jupyter-ext-chart .jxc-grid { display: grid; gap: 10px 14px;
  grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); }
.jupyter-ext-chart .jxc-panel { position: relative; min-width: 0; }
.jupyter-ext-chart .jxc-title { font-weight: 600; margin: 2px 0 2px 4px; }
.jupyter-ext-chart .jxc-plot { width: 100%; min-height: 20px; }
.jupyter-ext-chart .jxc-empty .jxc-plot::after { content: "no data yet";
  color: var(--jp-ui-font-color3, #999); margin-left: 60px; }
.jupyter-ext-chart .jxc-legend { display: flex; flex-wrap: wrap; gap: 2px 12px;
  margin: 2px 4px; }
.jupyter-ext-chart .jxc-item { cursor: pointer; user-select: none; white-space: nowrap; }
.jupyter-ext-chart .jxc-item.jxc-off { opacity: 0.4; text-decoration: line-through; }
.jupyter-ext-chart .jxc-value { font-variant-numeric: tabular-nums;
  color: var(--jp-ui-font-color2, #555); }
.jupyter-ext-chart .jxc-swatch { display: inline-block; width: 14px; height: 3px;
  vertical-align: middle; margin-right: 4px; }
.jupyter-ext-chart .jxc-note { color: var(--jp-ui-font-color2, #777); margin: 0 4px;
  font-size: 11px; }
.jupyter-ext-chart .jxc-tip { position: absolute; pointer-events: none; display: none;
  background: var(--jp-layout-color0, #fff); color: var(--jp-ui-font-color1, #222);
  border: 1px solid var(--jp-border-color1, #bbb); border-radius: 3px;
  box-shadow: 0 1px 4px rgba(0,0,0,0.2); padding: 4px 7px; font-size: 11px;
  white-space: nowrap; z-index: 10; }
.jupyter-ext-chart .jxc-tip-head { font-weight: 600; margin-bottom: 2px; }
.jupyter-ext-chart .jxc-raw { color: var(--jp-ui-font-color2, #777); font-weight: normal; }
.jupyter-ext-chart .u-select { background: rgba(120,120,120,0.2); }
`;
