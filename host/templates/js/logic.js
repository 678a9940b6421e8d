// The config's keys and the verdict, free of host calls so `node --test`
// checks them.

/** The job's `[job.config]` keys, for opsd-sdk's `config`: a key without
 * `default` is required, any other key is refused. */
export const CONFIG = {
  dir: { type: 'string' },
  max_bytes: { type: 'integer' },
};

export function verdict(dir, files, total, maxBytes) {
  const line = `${dir} holds ${files} files, ${total} bytes (budget ${maxBytes})`;
  return total > maxBytes ? { warn: true, summary: `${line}: over budget` } : { warn: false, summary: line };
}
