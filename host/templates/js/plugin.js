// {{name}}: an opsd plugin. It reports how much a directory holds and
// warns when that passes a budget; replace `run` with your chore.
//
// Test:    opsd plugin test
// Build:   opsd plugin build   (see README.md for the steps it runs)
// Install: cp {{name}}.wasm /var/lib/opsd/plugins/

import * as opsd from './opsd-sdk.js';
import { CONFIG, verdict } from './logic.js';

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
  const { dir, max_bytes: budget } = opsd.config(ctx, CONFIG);
  let files = 0;
  let total = 0;
  try {
    for (const entry of opsd.fs.list(dir)) {
      if (entry.type === 'regular-file') {
        files += 1;
        total += opsd.fs.stat(`${dir}/${entry.name}`).size;
      }
    }
  } catch (e) {
    throw opsd.pluginError(e.message, 'io');
  }
  opsd.info(`measured ${dir}`);
  const { warn, summary } = verdict(dir, files, total, budget);
  const make = warn ? opsd.warning : opsd.ok;
  return make(summary, { metrics: [opsd.metric('bytes', total, 'bytes')] });
}
