// The verdict, free of host calls so `node --test` checks it.
export function verdict(dir, files, total, maxBytes) {
  const line = `${dir} holds ${files} files, ${total} bytes (budget ${maxBytes})`;
  return total > maxBytes ? { warn: true, summary: `${line}: over budget` } : { warn: false, summary: line };
}
