// opsd-sdk.js: the JavaScript side of the opsd plugin contract
// (opsd:plugin@0.1.3), over the imports ComponentizeJS gives a component.
//
// One file, copied into each project by `opsd plugin new --lang js`; its
// source is sdk/js/opsd-sdk.js in opsd's repository. The world the plugin
// builds for must import `wasi:filesystem/preopens@0.2.12` besides
// `opsd:plugin/plugin@0.1.3` (the scaffold's wit/world.wit does). It gives:
//
// - `config(ctx, fields)`: the job's `[job.config]` checked against a
//   description of its keys, naming a missing, unknown or mistyped one;
// - `ok`, `warning`, `failed`, `metric` and `Report` for outcomes;
//   `pluginError` and `badConfig` for errors to throw;
// - `trace` ... `error` and `progress` for the run's log;
// - `run` for a program the job's `exec` grant names, throwing an Error
//   with its stderr when it fails;
// - `files` (stat, setMode, setOwner, syncDir) and `fs` (readText,
//   writeText, list, stat, remove, removeDir) over the granted paths.
//
// 64-bit values (u64, s64: sizes, times) arrive from the bindings as
// BigInt; everything this module returns holds them as Numbers when
// Number.isSafeInteger allows (below 2^53, 9 PB), and keeps the BigInt
// otherwise, so `typeof x === 'bigint'` tells the rare huge one. Host
// errors (a `result` error, thrown by ComponentizeJS with the text in
// `.payload`) are re-thrown as ordinary Errors whose message is the text.

import { log as hostLog, progress as hostProgress } from 'opsd:plugin/log@0.1.3';
import { run as hostRun } from 'opsd:plugin/process@0.1.3';
import * as hostFiles from 'opsd:plugin/files@0.1.3';
import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';

/** A BigInt as a Number when that is exact; other values as they are. */
export function toNumber(value) {
  if (typeof value === 'bigint') {
    const n = Number(value);
    return Number.isSafeInteger(n) ? n : value;
  }
  return value;
}

/** A record (or list, or tuple) with every BigInt inside through toNumber. */
export function numbers(value) {
  if (typeof value === 'bigint') return toNumber(value);
  if (Array.isArray(value)) return value.map(numbers);
  if (value instanceof Uint8Array) return value;
  if (value !== null && typeof value === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = numbers(v);
    return out;
  }
  return value;
}

/** The text of a host error: a string payload, a variant's value, a message. */
export function errorText(e) {
  const p = e?.payload;
  if (typeof p === 'string') return p;
  if (p !== undefined && p !== null && typeof p === 'object' && 'tag' in p) {
    return p.val === undefined ? p.tag : `${p.tag}: ${p.val}`;
  }
  return e?.message ?? String(e);
}

/** Runs `call`; a host error comes out as `new Error(what + ': ' + text)`. */
export function hostCall(what, call) {
  try {
    return call();
  } catch (e) {
    const err = new Error(`${what}: ${errorText(e)}`);
    err.payload = e?.payload;
    throw err;
  }
}

// ---- config and errors ------------------------------------------------

/** A plugin-error to throw from `run`: `throw pluginError('...', 'io')`. */
export function pluginError(message, kind) {
  return { message, kind };
}

/** A `bad-config` plugin-error naming the job. */
export function badConfig(ctx, message) {
  return pluginError(`job \`${ctx.job}\`: ${message}`, 'bad-config');
}

function typeOf(value) {
  if (Array.isArray(value)) return 'array';
  if (value === null) return 'null';
  return typeof value;
}

/**
 * `json` (the config) checked against `fields`, a map from key to
 * `{ type, default }`: `type` is 'string', 'number', 'integer',
 * 'boolean', 'array', 'object' or a list of them; a field without
 * `default` is required, a key not in `fields` is refused. Throws an
 * Error naming the key.
 */
export function loadConfig(json, fields) {
  let raw;
  try {
    raw = JSON.parse(json || '{}');
  } catch (e) {
    throw new Error(`the config is not JSON: ${e.message}`);
  }
  if (typeOf(raw) !== 'object') throw new Error('the config must be a table of keys');
  const known = Object.keys(fields);
  for (const key of Object.keys(raw)) {
    if (!known.includes(key)) {
      throw new Error(`unknown key \`${key}\`; known keys: ${[...known].sort().join(', ')}`);
    }
  }
  const out = {};
  for (const [key, spec] of Object.entries(fields)) {
    if (!(key in raw)) {
      if (!('default' in spec)) throw new Error(`\`${key}\` is required`);
      out[key] = spec.default;
      continue;
    }
    const value = raw[key];
    const want = [].concat(spec.type ?? []);
    const ok = want.length === 0 || want.some((t) =>
      t === 'integer' ? Number.isInteger(value) : typeOf(value) === t);
    if (!ok) throw new Error(`\`${key}\` must be ${want.join(' or ')}, not ${JSON.stringify(value)}`);
    out[key] = value;
  }
  return out;
}

/** The run's config (see loadConfig); throws a bad-config plugin-error. */
export function config(ctx, fields) {
  try {
    return loadConfig(ctx.config, fields);
  } catch (e) {
    throw badConfig(ctx, e.message);
  }
}

// ---- outcomes ---------------------------------------------------------

/** A metric record; `value` may be a BigInt. */
export function metric(name, value, unit) {
  return { name, value: Number(value), unit: unit ?? undefined };
}

function outcome(status, summary, { details = '', metrics = [], artifacts = [] } = {}) {
  return { status, summary, details, metrics, artifacts };
}

/** An outcome with status ok; options: details, metrics, artifacts. */
export const ok = (summary, options) => outcome('ok', summary, options);
/** Done, but something needs a look. */
export const warning = (summary, options) => outcome('warning', summary, options);
/** The chore was not done. */
export const failed = (summary, options) => outcome('failed', summary, options);

const RANK = { ok: 0, warning: 1, failed: 2 };

/** Findings gathered during a run; the worst decides the status. */
export class Report {
  constructor() {
    this.status = 'ok';
    this.lines = [];
    this.metrics = [];
  }
  note(line) { this.lines.push(line); }
  warn(line) { this.#raise('warning'); this.lines.push(`warning: ${line}`); }
  fail(line) { this.#raise('failed'); this.lines.push(`failed: ${line}`); }
  metric(name, value, unit) { this.metrics.push(metric(name, value, unit)); }
  #raise(status) { if (RANK[status] > RANK[this.status]) this.status = status; }
  /** The outcome: the worst status, every finding a line of the details. */
  outcome(summary, artifacts = []) {
    return outcome(this.status, summary, { details: this.lines.join('\n'), metrics: this.metrics, artifacts });
  }
}

// ---- logging ----------------------------------------------------------

export const trace = (message) => hostLog('trace', message);
export const debug = (message) => hostLog('debug', message);
export const info = (message) => hostLog('info', message);
export const warn = (message) => hostLog('warn', message);
export const error = (message) => hostLog('error', message);

/** Progress: `done` of `total` (undefined when unknown); Numbers are fine. */
export function progress(done, total, message) {
  hostProgress(BigInt(done), total === undefined || total === null ? undefined : BigInt(total), message);
}

// ---- processes --------------------------------------------------------

/**
 * Runs `program` (named in the job's `exec` grant) with `args`, no shell.
 * Options: stdin (string or Uint8Array), cwd, env ([[name, value]]),
 * timeoutMs, stdoutFile (a guest path in a read-write grant), check
 * (default true: a non-zero exit throws). Returns { code, signal, stdout,
 * stderr (Uint8Arrays), stdoutText, stderrText, truncated, durationMs }.
 * A program the job does not grant fails the run whatever the plugin does.
 */
export function run(program, args = [], options = {}) {
  const { stdin, cwd, env = [], timeoutMs, stdoutFile, check = true } = options;
  const bytes = typeof stdin === 'string' ? new TextEncoder().encode(stdin) : stdin;
  const exit = hostCall(program, () => hostRun({
    program,
    args,
    cwd,
    env,
    stdin: bytes === undefined ? { tag: 'none' } : { tag: 'bytes', val: bytes },
    stdout: stdoutFile ? { tag: 'file', val: stdoutFile } : { tag: 'capture' },
    stderr: { tag: 'capture' },
    timeoutMs: timeoutMs === undefined ? undefined : BigInt(timeoutMs),
  }));
  const decode = (b) => new TextDecoder().decode(b);
  const result = {
    ...numbers({ code: exit.code, signal: exit.signal, truncated: exit.truncated, durationMs: exit.durationMs }),
    stdout: exit.stdout,
    stderr: exit.stderr,
    stdoutText: decode(exit.stdout),
    stderrText: decode(exit.stderr),
  };
  if (check && result.code !== 0) {
    const how = result.code === undefined ? `signal ${result.signal}` : `exit code ${result.code}`;
    const err = new Error(`${program} failed (${how}): ${result.stderrText.trim() || '(no stderr)'}`);
    err.exit = result;
    throw err;
  }
  return result;
}

// ---- files: what WASI cannot say or do --------------------------------

/** The host's `files` interface, with numbers and ordinary Errors. */
export const files = {
  /** Mode, owner, size and free space of the filesystem holding `path`. */
  stat: (path) => numbers(hostCall(path, () => hostFiles.stat(path))),
  /** Permission bits, 0o777 at most (read-write grant). */
  setMode: (path, mode) => hostCall(path, () => hostFiles.setMode(path, mode)),
  /** Owner and/or group by name or number (read-write grant). */
  setOwner: (path, owner, group) => hostCall(path, () => hostFiles.setOwner(path, owner, group)),
  /** Makes a rename into directory `path` durable. */
  syncDir: (path) => hostCall(path, () => hostFiles.syncDir(path)),
  /** sha256 (hex) and size of a regular file, hashed by the host at native speed. */
  sha256: (path) => numbers(hostCall(path, () => hostFiles.sha256(path))),
};

// ---- fs: files in the granted directories (wasi:filesystem) -----------

/** WASI error codes in the words of `man errno`. */
const WORDS = {
  access: 'permission denied',
  'not-permitted': 'operation not permitted',
  'no-entry': 'no such file or directory',
  exist: 'file exists',
  'not-directory': 'not a directory',
  'is-directory': 'is a directory',
  'not-empty': 'directory not empty',
  'read-only': 'read-only file system',
  'insufficient-space': 'no space left on device',
  loop: 'too many levels of symbolic links',
};

function fsError(path, e) {
  const code = typeof e?.payload === 'string' ? e.payload : undefined;
  const err = new Error(`${path}: ${code ? WORDS[code] ?? code : errorText(e)}`);
  err.code = code;
  return err;
}

/** The preopened directory holding guest path `path`, and `path` relative to it. */
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
    throw new Error(`${path} is not in a granted directory; grant it in the job's fs list, such as { host = "...", guest = "${path}", access = "ro" }`);
  }
  return { dir: best.descriptor, rel: path.slice(best.prefix.length).replace(/^\/+/, '') || '.' };
}

function wasi(path, call) {
  const { dir, rel } = resolve(path);
  try {
    return call(dir, rel);
  } catch (e) {
    throw fsError(path, e);
  }
}

const CHUNK = 65536n;

/** A small `fs` over the job's granted directories, by guest path. */
export const fs = {
  /** The UTF-8 text of a file. */
  readText(path) {
    return wasi(path, (dir, rel) => {
      const file = dir.openAt({}, rel, {}, { read: true });
      const parts = [];
      let offset = 0n;
      for (;;) {
        const [bytes, end] = file.read(CHUNK, offset);
        parts.push(bytes);
        offset += BigInt(bytes.length);
        if (end || bytes.length === 0) break;
      }
      const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const p of parts) {
        all.set(p, at);
        at += p.length;
      }
      return new TextDecoder().decode(all);
    });
  },
  /** Creates or truncates a file (read-write grant) and writes `text`. */
  writeText(path, text) {
    wasi(path, (dir, rel) => {
      const file = dir.openAt({}, rel, { create: true, truncate: true }, { write: true });
      const bytes = new TextEncoder().encode(text);
      let at = 0;
      while (at < bytes.length) {
        at += Number(file.write(bytes.subarray(at), BigInt(at)));
      }
      file.syncData();
    });
  },
  /** A directory's entries: [{ name, type }], type as WASI names it
   * ('regular-file', 'directory', 'symbolic-link', ...). */
  list(path) {
    return wasi(path, (dir, rel) => {
      const d = rel === '.' ? dir : dir.openAt({}, rel, { directory: true }, { read: true });
      const stream = d.readDirectory();
      const out = [];
      for (let e = stream.readDirectoryEntry(); e; e = stream.readDirectoryEntry()) {
        out.push({ name: e.name, type: e.type });
      }
      return out;
    });
  },
  /** { type, size, mtime } of a path (symlinks not followed); mtime in
   * seconds since the epoch, undefined when the filesystem has none. */
  stat(path) {
    return wasi(path, (dir, rel) => {
      const st = rel === '.' ? dir.stat() : dir.statAt({}, rel);
      const mtime = st.dataModificationTimestamp;
      return {
        type: st.type,
        size: toNumber(st.size),
        mtime: mtime ? toNumber(mtime.seconds) : undefined,
      };
    });
  },
  /** Removes a file (read-write grant). */
  remove(path) {
    wasi(path, (dir, rel) => dir.unlinkFileAt(rel));
  },
  /** Removes an empty directory (read-write grant). */
  removeDir(path) {
    wasi(path, (dir, rel) => dir.removeDirectoryAt(rel));
  },
};
