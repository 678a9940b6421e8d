// cache-clean: removes cache files older than an age or beyond a size
// budget inside the one directory its job grants, and reports what it
// freed. A JavaScript opsd plugin, built by build.sh (rolldown, then
// ComponentizeJS).

import { log, progress } from 'opsd:plugin/log@0.1.2';
import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';
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

/** The preopened directory holding `path`, and `path` relative to it. */
function resolve(path) {
  let best = null;
  for (const [descriptor, root] of getDirectories()) {
    const prefix = root.replace(/\/+$/, '');
    if ((path === prefix || path.startsWith(`${prefix}/`) || prefix === '') &&
        (best === null || prefix.length > best.prefix.length)) {
      best = { descriptor, prefix };
    }
  }
  if (best === null) {
    throw fail(`${path} is not in a granted directory; grant it with { host = "...", guest = "${path}", access = "rw" }`, 'denied');
  }
  const rel = path.slice(best.prefix.length).replace(/^\/+/, '') || '.';
  return { root: best.descriptor, rel };
}

/** WASI errors arrive as a ComponentError whose payload is the error code. */
function code(e) {
  return e?.payload ?? e?.message ?? String(e);
}

function fail(message, kind) {
  return { message, kind };
}

/** Every regular file under `rel` (symlinks are neither followed nor removed). */
function walk(root, rel, guestBase, out, dirs, skipped) {
  let dir;
  try {
    dir = rel === '.' ? root : root.openAt({}, rel, { directory: true }, { read: true });
  } catch (e) {
    skipped.push(`${guestBase}: ${code(e)}`);
    return;
  }
  const entries = dir.readDirectory();
  for (;;) {
    const entry = entries.readDirectoryEntry();
    if (!entry) break;
    const childRel = rel === '.' ? entry.name : `${rel}/${entry.name}`;
    const guest = `${guestBase}/${entry.name}`;
    if (entry.type === 'directory') {
      dirs.push({ rel: childRel, guest });
      walk(root, childRel, guest, out, dirs, skipped);
    } else if (entry.type === 'regular-file') {
      try {
        const st = root.statAt({}, childRel);
        out.push({
          rel: childRel,
          path: guest,
          name: entry.name,
          size: Number(st.size),
          mtime: Number(st.dataModificationTimestamp?.seconds ?? 0n),
        });
      } catch (e) {
        skipped.push(`${guest}: ${code(e)}`);
      }
    }
  }
}

export function run(ctx) {
  let cfg;
  try {
    cfg = parseConfig(ctx.config);
  } catch (e) {
    throw fail(`job \`${ctx.job}\`: ${e.message}`, 'bad-config');
  }
  const { root, rel } = resolve(cfg.dir);
  const files = [];
  const dirs = [];
  const skipped = [];
  walk(root, rel, cfg.dir, files, dirs, skipped);
  const total = files.reduce((sum, f) => sum + f.size, 0);
  const now = Math.floor(Date.now() / 1000);
  const { remove, keepBytes } = selectVictims(files, { now, ...cfg });
  log('info', `${cfg.dir}: ${files.length} files, ${human(total)}; ${remove.length} to remove`);

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
      root.unlinkFileAt(f.rel);
      freed += f.size;
      removed += 1;
      lines.push(`removed ${f.path} (${human(f.size)}, ${why})`);
    } catch (e) {
      errors.push(`${f.path}: ${code(e)}`);
    }
    progress(BigInt(i + 1), BigInt(remove.length), f.path);
  });
  let dirsRemoved = 0;
  if (!ctx.dryRun && cfg.removeEmptyDirs) {
    // Deepest first, so a parent emptied by its children goes too.
    for (const d of [...dirs].reverse()) {
      try {
        root.removeDirectoryAt(d.rel);
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
  return {
    status: errors.length > 0 ? 'failed' : skipped.length > 0 ? 'warning' : 'ok',
    summary: errors.length > 0 ? `${summary}; ${errors.length} could not be removed` : summary,
    details: lines.join('\n'),
    metrics: [
      { name: 'files_scanned', value: files.length, unit: undefined },
      { name: 'files_removed', value: count, unit: undefined },
      { name: 'bytes_freed', value: ctx.dryRun ? 0 : freed, unit: 'bytes' },
      { name: 'bytes_left', value: keepBytes, unit: 'bytes' },
      { name: 'dirs_removed', value: dirsRemoved, unit: undefined },
    ],
    artifacts: [],
  };
}
