// Which cache files to remove: pure functions, tested with `node --test`
// and bundled into the component by `jco componentize --bundle`.

const UNITS = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };
const SPANS = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/** "500M", "2G", "100k" or a number of bytes; throws on anything else. */
export function parseSize(value, key) {
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0) return value;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$/i.exec(String(value));
  if (!m) throw new Error(`${key}: "${value}" is not a size; write it like "500M", "2G" or "100k"`);
  return Math.floor(Number(m[1]) * UNITS[m[2].toLowerCase()]);
}

/** "7d", "12h", "30m", "90s", "2w" or a number of seconds. */
export function parseAge(value, key) {
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0) return value;
  const m = /^\s*(\d+)\s*([smhdw])\s*$/i.exec(String(value));
  if (!m) throw new Error(`${key}: "${value}" is not a duration; write it like "7d", "12h" or "30m"`);
  return Number(m[1]) * SPANS[m[2].toLowerCase()];
}

/** The job's `[job.config]`, checked, with defaults. */
export function parseConfig(json) {
  const raw = JSON.parse(json || '{}');
  const known = ['dir', 'max_age', 'max_bytes', 'include', 'remove_empty_dirs'];
  for (const key of Object.keys(raw)) {
    if (!known.includes(key)) {
      throw new Error(`unknown key \`${key}\`; known keys: ${known.join(', ')}`);
    }
  }
  if (typeof raw.dir !== 'string' || !raw.dir.startsWith('/')) {
    throw new Error('`dir` is required: the guest path of the cache directory (a read-write grant)');
  }
  if (raw.max_age === undefined && raw.max_bytes === undefined) {
    throw new Error('set `max_age` (like "7d"), `max_bytes` (like "500M") or both');
  }
  return {
    dir: raw.dir.replace(/\/+$/, '') || '/',
    maxAge: raw.max_age === undefined ? null : parseAge(raw.max_age, 'max_age'),
    maxBytes: raw.max_bytes === undefined ? null : parseSize(raw.max_bytes, 'max_bytes'),
    include: (raw.include ?? []).map(globToRegExp),
    removeEmptyDirs: raw.remove_empty_dirs ?? true,
  };
}

/** A `*`/`?` glob matched against a file's name. */
export function globToRegExp(glob) {
  const body = String(glob)
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

/**
 * Files ({ path, name, size, mtime } with mtime in seconds) to remove:
 * everything older than maxAge, then the oldest of the rest until what
 * is left fits in maxBytes. Returns { remove, keepBytes } with each
 * victim's reason.
 */
export function selectVictims(files, { now, maxAge, maxBytes, include = [] }) {
  const candidates = files.filter(
    (f) => include.length === 0 || include.some((re) => re.test(f.name)),
  );
  const remove = [];
  let kept = [];
  for (const f of candidates) {
    if (maxAge !== null && now - f.mtime > maxAge) remove.push({ ...f, reason: 'age' });
    else kept.push(f);
  }
  let keepBytes = kept.reduce((sum, f) => sum + f.size, 0);
  if (maxBytes !== null && keepBytes > maxBytes) {
    kept.sort((a, b) => a.mtime - b.mtime || a.path.localeCompare(b.path));
    while (kept.length > 0 && keepBytes > maxBytes) {
      const f = kept.shift();
      keepBytes -= f.size;
      remove.push({ ...f, reason: 'budget' });
    }
  }
  return { remove, keepBytes };
}

/** 1536 -> "1.5 KiB". */
export function human(bytes) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}
