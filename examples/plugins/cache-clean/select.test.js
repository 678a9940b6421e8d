// `node --test examples/plugins/cache-clean/`: the selection rules, no
// component needed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig, parseSize, parseAge, selectVictims, human } from './select.js';

const DAY = 86400;
const now = 100 * DAY;
const file = (name, size, ageDays) => ({ path: `/cache/${name}`, name, size, mtime: now - ageDays * DAY });

test('sizes and ages', () => {
  assert.equal(parseSize('500M', 'x'), 500 * 1024 * 1024);
  assert.equal(parseSize('1.5k', 'x'), 1536);
  assert.equal(parseAge('7d', 'x'), 7 * DAY);
  assert.throws(() => parseSize('lots', 'max_bytes'), /max_bytes: "lots" is not a size/);
  assert.throws(() => parseAge('7 days', 'max_age'), /max_age/);
  assert.equal(human(1536), '1.5 KiB');
});

test('config needs a dir and a rule, and names unknown keys', () => {
  assert.throws(() => parseConfig('{"max_age":"1d"}'), /`dir` is required/);
  assert.throws(() => parseConfig('{"dir":"/c"}'), /max_age/);
  assert.throws(() => parseConfig('{"dir":"/c","max_age":"1d","maxage":1}'), /unknown key `maxage`/);
  assert.equal(parseConfig('{"dir":"/c/","max_bytes":"1k"}').dir, '/c');
});

test('old files go first, then the oldest until the rest fits', () => {
  const files = [file('a', 100, 10), file('b', 100, 3), file('c', 100, 2), file('d', 100, 1)];
  const { remove, keepBytes } = selectVictims(files, { now, maxAge: 7 * DAY, maxBytes: 150 });
  assert.deepEqual(remove.map((f) => [f.name, f.reason]), [['a', 'age'], ['b', 'budget'], ['c', 'budget']]);
  assert.equal(keepBytes, 100);
});

test('include limits what may be removed', () => {
  const files = [file('x.tmp', 10, 30), file('keep.db', 10, 30)];
  const { remove } = selectVictims(files, { now, maxAge: DAY, maxBytes: null, include: [/^.*\.tmp$/] });
  assert.deepEqual(remove.map((f) => f.name), ['x.tmp']);
});
