// Browser check of the experimental fast write path (--fast-write on):
// subscriber media is encrypted with the node's own SRTP context and
// written straight to its UDP socket. Chromium must decrypt and decode it
// (getStats), and the node's log must show that the streams took that path.
const { test: base, expect, startConfab, serveFixture, expectMediaFlowing } = require('../lib/confab');

const test = base.extend({
  confab: async ({}, use, testInfo) =>
    serveFixture(await startConfab({ nodeId: 'fast-write', extraArgs: ['--fast-write', 'on'] }), use, testInfo),
});

test('two participants see and hear each other through the fast write path', async ({ confab, join }) => {
  const alice = await join('fast', 'alice');
  const bob = await join('fast', 'bob');
  for (const page of [alice, bob]) {
    await expect(page.getByTestId('connection-state')).toHaveText('connected', { timeout: 30_000 });
  }
  await expectMediaFlowing(alice, { remotes: 1, label: 'alice' });
  await expectMediaFlowing(bob, { remotes: 1, label: 'bob' });
  // Both subscribers' audio and video streams started on the fast path.
  const fast = confab.logs().split('\n').filter((l) => l.includes('stream on the fast write path'));
  expect(fast.length, 'streams on the fast write path').toBeGreaterThanOrEqual(4);
});
