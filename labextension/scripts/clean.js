#!/usr/bin/env node
// rm -rf for each argument, relative to the labextension folder (no rimraf dependency).
'use strict';

const fs = require('fs');
const path = require('path');

for (const target of process.argv.slice(2)) {
  fs.rmSync(path.resolve(__dirname, '..', target), { recursive: true, force: true });
}
