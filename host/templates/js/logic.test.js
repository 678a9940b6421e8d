import { test } from 'node:test';
import assert from 'node:assert/strict';
import { verdict } from './logic.js';

test('over budget warns', () => {
  assert.equal(verdict('/data', 2, 10, 100).warn, false);
  const { warn, summary } = verdict('/data', 2, 1000, 100);
  assert.equal(warn, true);
  assert.match(summary, /over budget$/);
});
