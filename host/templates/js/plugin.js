// {{name}}: an opsd plugin. It reports how much a directory holds and
// warns when that passes a budget; replace `run` with your chore.
//
// Test:    opsd plugin test
// Build:   opsd plugin build   (see README.md for the steps it runs)
// Install: cp {{name}}.wasm /var/lib/opsd/plugins/

import { log } from 'opsd:plugin/log@0.1.2';
import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';
import { verdict } from './logic.js';

export function describe() {
  return {
    name: '{{name}}',
    version: '0.1.0',
    description: "Reports a directory's size against a budget",
    capabilities: {
      fs: [{ guest: '/data', write: false, reason: 'the directory to measure' }],
      exec: [],
      net: false,
    },
    configSchema: JSON.stringify({
      type: 'object',
      required: ['dir', 'max_bytes'],
      additionalProperties: false,
      properties: { dir: { type: 'string' }, max_bytes: { type: 'integer' } },
    }),
    suggestedSchedule: '0 * * * *',
  };
}

export function run(ctx) {
  const { dir, max_bytes: budget } = JSON.parse(ctx.config);
  if (typeof dir !== 'string' || typeof budget !== 'number') {
    throw { message: `job \`${ctx.job}\`: set \`dir\` (a guest path) and \`max_bytes\` (a number)`, kind: 'bad-config' };
  }
  // The granted directory is one of the preopens, by its guest path.
  const found = getDirectories().find(([, path]) => path === dir);
  if (!found) {
    throw { message: `${dir} is not a granted directory; grant it in the job's fs list`, kind: 'io' };
  }
  const [descriptor] = found;
  let files = 0;
  let total = 0;
  const entries = descriptor.readDirectory();
  for (let e = entries.readDirectoryEntry(); e; e = entries.readDirectoryEntry()) {
    if (e.type === 'regular-file') {
      files += 1;
      total += Number(descriptor.statAt({}, e.name).size);
    }
  }
  log('info', `measured ${dir}`);
  const { warn, summary } = verdict(dir, files, total, budget);
  return {
    status: warn ? 'warning' : 'ok',
    summary,
    details: '',
    metrics: [{ name: 'bytes', value: total, unit: 'bytes' }],
    artifacts: [],
  };
}
