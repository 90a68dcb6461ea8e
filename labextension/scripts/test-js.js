#!/usr/bin/env node
// Run the chart module's unit tests (test/*.test.ts) with node's own test runner:
// esbuild bundles each test file for node, then `node --test` runs them.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');
const esbuild = require('esbuild');

const here = path.resolve(__dirname, '..');
const testDir = path.join(here, 'test');
const out = fs.mkdtempSync(path.join(os.tmpdir(), 'jpe-js-test-'));
try {
  const entries = fs
    .readdirSync(testDir)
    .filter(f => f.endsWith('.test.ts'))
    .map(f => path.join(testDir, f));
  esbuild.buildSync({
    entryPoints: entries,
    outdir: out,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node18',
    logLevel: 'warning'
  });
  const files = fs.readdirSync(out).map(f => path.join(out, f));
  const result = spawnSync(process.execPath, ['--test', ...files], { stdio: 'inherit' });
  process.exitCode = result.status === null ? 1 : result.status;
} finally {
  fs.rmSync(out, { recursive: true, force: true });
}
