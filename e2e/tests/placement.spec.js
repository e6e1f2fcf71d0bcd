// Placement browser test (docs/placement.md): a page opened on one node for
// a room that another node serves is moved there before it joins, and media
// flows between the two participants on that one node (no pipe needed).
const crypto = require('node:crypto');
const { test, expect } = require('../lib/cluster');
const { expectMediaFlowing } = require('../lib/confab');

const uniqueRoom = (prefix) => `${prefix}-${crypto.randomBytes(4).toString('hex')}`;

/** nodeOf waits until page is connected and returns its node id. */
async function nodeOf(page) {
  await expect(page.getByTestId('connection-state')).toHaveText('connected', { timeout: 45_000 });
  return page.evaluate(() => window.confab.nodeId);
}

test.describe('placement', () => {
  test('a page opened on another node joins the node serving the room', async ({ cluster, join }) => {
    test.setTimeout(180_000);
    const room = uniqueRoom('place');
    const alice = await join('n1', room, 'Alice');
    const home = await nodeOf(alice);
    const elsewhere = ['n1', 'n2', 'n3'].find((id) => id !== home);

    const bob = await join(elsewhere, room, 'Bob');
    expect(await nodeOf(bob), `Bob opened the page on ${elsewhere}`).toBe(home);
    await expect(bob.getByTestId('node-id')).toHaveText(home);
    await expectMediaFlowing(alice, { remotes: 1, timeout: 45_000, label: 'Alice' });
    await expectMediaFlowing(bob, { remotes: 1, timeout: 45_000, label: 'Bob' });

    // Only the serving node has the room: nothing was piped.
    const statuses = await cluster.statuses();
    for (const [id, st] of Object.entries(statuses)) {
      const r = (st.rooms || []).find((x) => x.name === room);
      if (id === home) {
        expect(r && r.participants.map((p) => p.name).sort(), `${id} participants`).toEqual(['Alice', 'Bob']);
      } else {
        expect(r, `${id} must not open ${room}`).toBeUndefined();
      }
    }
  });
});
