#!/usr/bin/env node
// Bundle the chart module with uPlot into the ES module that the notebook's LiveChart
// widget (anywidget) loads: ../jupyter_ext/widgets/static/chart.js, one self-contained
// file inside the Python package, so nothing is fetched at run time.
//
// Usage: node scripts/build-widget.js  (always minified: the file ships in the package)
'use strict';

const path = require('path');
const esbuild = require('esbuild');

const here = path.resolve(__dirname, '..');

esbuild
  .build({
    entryPoints: [path.join(here, 'src/chart/widget.ts')],
    outfile: path.join(here, '../jupyter_ext/widgets/static/chart.js'),
    bundle: true,
    format: 'esm',
    target: 'es2020',
    minify: true,
    loader: { '.css': 'text' },
    legalComments: 'eof',
    logLevel: 'warning'
  })
  .catch(() => {
    process.exitCode = 1;
  });
