#!/usr/bin/env node
// Build the prebuilt extension into ../jupyter_ext/labextension (package.json's
// jupyterlab.outputDir) with Node alone: no Python, no network.
//
// `jupyter labextension build .` does the same, but JupyterLab 4.6's Python front end
// (jupyter_builder) refuses Node < 20.19, the Node Debian 12 and Ubuntu 24.04 ship. So we
// call @jupyterlab/builder (webpack, Node >= 18) ourselves and hand it the core metadata of
// the JupyterLab we target, pinned in package.json as @jupyterlab/core-meta (what the
// Python front end would read from node_modules too).
//
// It also puts install.json (which Python package ships the extension) into the output.
//
// Usage: node scripts/build-labextension.js [--development] [--source-map] PATH
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');

const here = path.resolve(__dirname, '..');
const coreMeta = require.resolve('@jupyterlab/core-meta/core.package.json', { paths: [here] });
const builder = require.resolve('@jupyterlab/builder/lib/build-labextension.js', {
  paths: [here]
});

// @jupyterlab/builder reads <core-path>/package.json; core-meta ships the data under
// another name (its own package.json is the npm manifest), so copy it into a temp dir.
const corePath = fs.mkdtempSync(path.join(os.tmpdir(), 'jpe-core-'));
try {
  fs.copyFileSync(coreMeta, path.join(corePath, 'package.json'));
  const args = [builder, '--core-path', corePath, ...process.argv.slice(2)];
  const result = spawnSync(process.execPath, args, { cwd: here, stdio: 'inherit' });
  if (result.error) {
    throw result.error;
  }
  process.exitCode = result.status === null ? 1 : result.status;
  if (process.exitCode === 0) {
    // install.json tells `jupyter labextension list` which Python package ships it.
    const outputDir = path.resolve(here, require(path.join(here, 'package.json')).jupyterlab.outputDir);
    fs.copyFileSync(path.join(here, 'install.json'), path.join(outputDir, 'install.json'));
  }
} finally {
  fs.rmSync(corePath, { recursive: true, force: true });
}
