// cache-clean: removes cache files older than an age or beyond a size
// budget inside the one directory its job grants, and reports what it
// freed. A JavaScript opsd plugin, built by build.sh (rolldown, then
// ComponentizeJS).

import * as opsd from './opsd-sdk.js';
import { parseConfig, selectVictims, human } from './select.js';

const SCHEMA = JSON.stringify({
  type: 'object',
  required: ['dir'],
  additionalProperties: false,
  properties: {
    dir: { type: 'string', description: 'guest path of the cache (a read-write grant)' },
    max_age: { type: ['string', 'number'], description: 'remove files older than this: "7d", "12h" or seconds' },
    max_bytes: { type: ['string', 'number'], description: 'then remove the oldest until the rest fits: "500M"' },
    include: { type: 'array', items: { type: 'string' }, description: 'only file names matching these globs' },
    remove_empty_dirs: { type: 'boolean', default: true },
  },
});

export function describe() {
  return {
    name: 'cache-clean',
    version: '0.1.0',
    description: 'Removes cache files past an age or beyond a size budget (JavaScript example)',
    capabilities: {
      fs: [{ guest: '/cache', write: true, reason: 'the cache to clean' }],
      exec: [],
      net: false,
    },
    configSchema: SCHEMA,
    suggestedSchedule: '15 3 * * *',
  };
}

/** Every regular file under `dir` (symlinks are neither followed nor
 * removed), through opsd-sdk's `fs` over the granted directories. */
function walk(dir, out, dirs, skipped) {
  let entries;
  try {
    entries = opsd.fs.list(dir);
  } catch (e) {
    skipped.push(e.message);
    return;
  }
  for (const entry of entries) {
    const path = `${dir}/${entry.name}`;
    if (entry.type === 'directory') {
      dirs.push(path);
      walk(path, out, dirs, skipped);
    } else if (entry.type === 'regular-file') {
      try {
        const { size, mtime } = opsd.fs.stat(path);
        out.push({ path, name: entry.name, size, mtime: mtime ?? 0 });
      } catch (e) {
        skipped.push(e.message);
      }
    }
  }
}

export function run(ctx) {
  let cfg;
  try {
    cfg = parseConfig(ctx.config);
  } catch (e) {
    throw opsd.badConfig(ctx, e.message);
  }
  // The cache itself must be readable: a missing grant is an error, a
  // subdirectory that cannot be read is a warning below.
  try {
    opsd.fs.stat(cfg.dir);
  } catch (e) {
    throw opsd.pluginError(e.message, 'io');
  }
  const files = [];
  const dirs = [];
  const skipped = [];
  walk(cfg.dir, files, dirs, skipped);
  const total = files.reduce((sum, f) => sum + f.size, 0);
  const now = Math.floor(Date.now() / 1000);
  const { remove, keepBytes } = selectVictims(files, { now, ...cfg });
  opsd.info(`${cfg.dir}: ${files.length} files, ${human(total)}; ${remove.length} to remove`);

  const lines = [];
  let freed = 0;
  let removed = 0;
  const errors = [];
  remove.forEach((f, i) => {
    const why = f.reason === 'age' ? 'older than max_age' : 'over max_bytes';
    if (ctx.dryRun) {
      lines.push(`would remove ${f.path} (${human(f.size)}, ${why})`);
      return;
    }
    try {
      opsd.fs.remove(f.path);
      freed += f.size;
      removed += 1;
      lines.push(`removed ${f.path} (${human(f.size)}, ${why})`);
    } catch (e) {
      errors.push(e.message);
    }
    opsd.progress(i + 1, remove.length, f.path);
  });
  let dirsRemoved = 0;
  if (!ctx.dryRun && cfg.removeEmptyDirs) {
    // Deepest first, so a parent emptied by its children goes too.
    for (const d of [...dirs].reverse()) {
      try {
        opsd.fs.removeDir(d);
        dirsRemoved += 1;
      } catch {
        // Not empty: kept.
      }
    }
  }
  for (const s of skipped) lines.push(`skipped ${s}`);
  for (const e of errors) lines.push(`could not remove ${e}`);

  const verb = ctx.dryRun ? 'would free' : 'freed';
  const count = ctx.dryRun ? remove.length : removed;
  const summary = `${verb} ${human(ctx.dryRun ? remove.reduce((s, f) => s + f.size, 0) : freed)} ` +
    `in ${count} files from ${cfg.dir}; ${human(keepBytes)} left`;
  const make = errors.length > 0 ? opsd.failed : skipped.length > 0 ? opsd.warning : opsd.ok;
  return make(errors.length > 0 ? `${summary}; ${errors.length} could not be removed` : summary, {
    details: lines.join('\n'),
    metrics: [
      opsd.metric('files_scanned', files.length),
      opsd.metric('files_removed', count),
      opsd.metric('bytes_freed', ctx.dryRun ? 0 : freed, 'bytes'),
      opsd.metric('bytes_left', keepBytes, 'bytes'),
      opsd.metric('dirs_removed', dirsRemoved),
    ],
  });
}
