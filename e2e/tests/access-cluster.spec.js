// Access tokens across nodes (two nodes, real Consul, --auth token,
// placement off so that the room spans both): an admin on n1 mutes, locks,
// removes and ends for participants on n2 from the page; a participant
// that fails over is checked again by the node it moves to.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const { execFileSync } = require('node:child_process');
const { test: base, expect } = require('@playwright/test');
const { startCluster } = require('../lib/cluster');
const { sleep } = require('../lib/confab');
const { itemOf, report, expectConnected, withPages } = require('../lib/meeting');

const CONFAB_BIN = process.env.CONFAB_BIN || path.resolve(__dirname, '..', '..', 'bin', 'confab');
const test = withPages(base);

test('admin actions work across nodes; failover checks the token again', async ({ pages }, testInfo) => {
  test.setTimeout(180_000);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'confab-keys-'));
  const keys = path.join(dir, 'api-keys');
  fs.writeFileSync(keys, `e2e ${crypto.randomBytes(24).toString('hex')}\n`, { mode: 0o600 });
  const mint = (room, identity, { name = '', grant = 'publish,subscribe,chat', ttl = '1h' } = {}) => execFileSync(CONFAB_BIN,
    ['token', '--api-keys-file', keys, '--room', room, '--identity', identity, '--name', name, '--grant', grant, '--ttl', ttl],
    { encoding: 'utf8' }).trim().split('\n').pop();
  const cluster = await startCluster({
    nodes: 2,
    nodeArgs: ['--auth', 'token', '--api-keys-file', keys, '--placement', 'off', '--drain-timeout', '2s'],
    statusHeaders: { Authorization: `Bearer ${mint('*', 'e2e', { grant: 'admin' })}` },
  });
  const room = `mod-${crypto.randomBytes(3).toString('hex')}`;
  const link = (node, token) => `${cluster.node(node).url}/rooms/${room}?token=${encodeURIComponent(token)}`;
  try {
    const t0 = Date.now();
    // Eve's token expires while she is in the room; her node will die.
    const eve = await pages.open(link('n2', mint(room, 'eve', { name: 'Eve', grant: 'subscribe', ttl: '10s' })), 'eve');
    const admin = await pages.open(link('n1', mint(room, 'adm', { name: 'Admin', grant: 'admin,subscribe' })), 'admin');
    const bob = await pages.open(link('n2', mint(room, 'bob', { name: 'Bob' })), 'bob');
    const carol = await pages.open(link('n2', mint(room, 'carol', { name: 'Carol', grant: 'subscribe' })), 'carol');
    for (const p of [eve, admin, bob, carol]) await expectConnected(p);
    await admin.getByTestId('toggle-participants').click();
    await expect(admin.getByTestId('admin-bar')).toBeVisible();
    await expect(bob.getByTestId('admin-bar')).toBeHidden();
    await expect(itemOf(bob, 'Carol').getByTestId('admin-remove')).toBeHidden();

    await test.step("the admin on n1 mutes Bob's microphone on n2", async () => {
      await expect(bob.getByTestId('toggle-audio')).toHaveAttribute('aria-pressed', 'false');
      const t = Date.now();
      await itemOf(admin, 'Bob').getByTestId('admin-mute-audio').click();
      await expect(bob.getByTestId('toggle-audio')).toHaveAttribute('aria-pressed', 'true', { timeout: 5_000 });
      await expect(bob.getByTestId('notice')).toContainText('Admin turned off your microphone');
      await expect(itemOf(admin, 'Bob')).toHaveAttribute('data-audio-muted', 'true', { timeout: 5_000 });
      report(testInfo, "admin's mute -> shown muted on the admin's page", Date.now() - t);
    });

    await test.step('the admin locks the room: n2 refuses a newcomer', async () => {
      await admin.getByTestId('admin-lock').click();
      for (const p of [admin, bob, carol]) await expect(p.getByTestId('room-locked')).toBeVisible({ timeout: 5_000 });
      await expect(admin.getByTestId('admin-lock')).toHaveAttribute('aria-pressed', 'true');
      const dave = await pages.open(link('n2', mint(room, 'dave', { name: 'Dave' })), 'dave');
      await expect(dave.getByTestId('error')).toContainText('locked', { timeout: 10_000 });
      await expect(dave.getByTestId('connection-state')).toHaveText('disconnected');
      await expect(itemOf(admin, 'Dave')).toHaveCount(0);
    });

    await test.step('the admin removes Carol on n2', async () => {
      await itemOf(admin, 'Carol').getByTestId('admin-remove').click();
      await expect(carol.getByTestId('error')).toContainText('removed', { timeout: 5_000 });
      await expect(carol.getByTestId('connection-state')).toHaveText('disconnected');
      await expect(itemOf(admin, 'Carol')).toHaveCount(0, { timeout: 5_000 });
      await sleep(2_000);
      await expect(carol.getByTestId('connection-state'), 'a removed page does not rejoin').toHaveText('disconnected');
    });

    await test.step('n2 dies: Bob moves to n1 with his token; Eve, whose token expired, is refused there', async () => {
      await admin.getByTestId('admin-lock').click(); // unlock: failover joins are joins
      await expect(bob.getByTestId('room-locked')).toBeHidden({ timeout: 5_000 });
      await sleep(Math.max(0, 16_000 - (Date.now() - t0))); // Eve's 10 s token and the 5 s leeway are over
      const t = Date.now();
      cluster.node('n2').signal('SIGKILL');
      await expect(bob.getByTestId('node-id').first()).toHaveText('n1', { timeout: 30_000 });
      await expectConnected(bob);
      report(testInfo, "Bob reconnected to n1 after n2's death", Date.now() - t);
      await expect(eve.getByTestId('error')).toContainText('expired', { timeout: 30_000 });
      await expect(eve.getByTestId('connection-state')).toHaveText('disconnected');
    });

    await test.step('the admin ends the meeting for everyone', async () => {
      await admin.getByTestId('admin-end').click();
      for (const p of [bob, admin]) {
        await expect(p.getByTestId('error')).toContainText('ended the meeting', { timeout: 5_000 });
        await expect(p.getByTestId('connection-state')).toHaveText('disconnected');
      }
    });
  } finally {
    await pages.close();
    const problems = await cluster.stop();
    await testInfo.attach('cluster.log', {
      body: Object.entries(cluster.logs()).map(([k, v]) => `----- ${k} -----\n${v}`).join('\n'), contentType: 'text/plain',
    });
    fs.rmSync(dir, { recursive: true, force: true });
    expect(problems.filter((p) => !p.startsWith('n2 had exited')), 'node shutdown').toEqual([]);
  }
});
