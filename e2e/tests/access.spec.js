// Access tokens in real Chromium (a node started with --auth token): a
// stranger can neither see nor join a room, refusals are clear on the page
// and on the wire, grants shape the page (a viewer cannot publish or chat,
// a hidden participant is not listed), and a second session of an
// identity replaces the first. Tokens are made by `confab token`.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const { execFileSync } = require('node:child_process');
const { test: base, expect } = require('@playwright/test');
const { startConfab, sleep } = require('../lib/confab');
const {
  sel, tileOf, itemOf, report, expectConnected, withPages, expectVideoDecoding,
} = require('../lib/meeting');

const CONFAB_BIN = process.env.CONFAB_BIN || path.resolve(__dirname, '..', '..', 'bin', 'confab');
const test = withPages(base);

/** node starts a confab with token auth and a fresh API keys file. */
async function tokenNode(testInfo) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'confab-keys-'));
  const keys = path.join(dir, 'api-keys');
  fs.writeFileSync(keys, `e2e ${crypto.randomBytes(24).toString('hex')}\n`, { mode: 0o600 });
  const node = await startConfab({ nodeId: 'auth-node', extraArgs: ['--auth', 'token', '--api-keys-file', keys, '--drain-timeout', '2s'] });
  const mint = (room, identity, { name = '', grant = 'publish,subscribe,chat', ttl = '1h' } = {}) => {
    const out = execFileSync(CONFAB_BIN, ['token', '--api-keys-file', keys, '--room', room, '--identity', identity,
      '--name', name, '--grant', grant, '--ttl', ttl], { encoding: 'utf8' });
    return out.trim().split('\n').pop();
  };
  const stop = async () => {
    await node.stop();
    await testInfo.attach('confab.log', { body: node.logs(), contentType: 'text/plain' });
    fs.rmSync(dir, { recursive: true, force: true });
  };
  return { node, mint, stop, link: (room, token) => `${node.url}/rooms/${room}?token=${encodeURIComponent(token)}` };
}

/** wsJoin opens a signaling socket from page and returns the answer to a version 4 join. */
const wsJoin = (page, room, token) => page.evaluate(async ({ room, token }) => {
  const ws = new WebSocket(`ws://${location.host}/rooms/${room}/ws`);
  return new Promise((resolve, reject) => {
    setTimeout(() => reject(new Error('no answer to join')), 10_000);
    ws.onopen = () => ws.send(JSON.stringify({ v: 4, type: 'join', name: 'Stranger', ...(token ? { token } : {}) }));
    ws.onmessage = (ev) => { resolve(JSON.parse(ev.data)); ws.close(); };
    ws.onerror = () => reject(new Error('websocket failed'));
  });
}, { room, token });

test.describe('access tokens', () => {
  test('a stranger can neither see nor join a room; refusals are clear', async ({ pages }, testInfo) => {
    const n = await tokenNode(testInfo);
    try {
      const room = `auth-${crypto.randomBytes(3).toString('hex')}`;
      const t0 = Date.now();
      const shortLived = n.mint(room, 'late', { name: 'Late', ttl: '1s' });
      const alice = await pages.open(n.link(room, n.mint(room, 'alice', { name: 'Alice' })), 'alice');
      await expectConnected(alice);

      const stranger = await pages.browser.newContext();
      pages.contexts.push(stranger);
      const page = await stranger.newPage();
      for (const [what, url, status, text] of [
        ['no token', `${n.node.url}/rooms/${room}`, 401, 'needs an access token'],
        ['a token for another room', n.link(room, n.mint('elsewhere', 'bob', { name: 'Bob' })), 403, 'another room'],
        ['a forged token', n.link(room, n.mint(room, 'bob', { name: 'Bob' }).slice(0, -4) + 'AAAA'), 401, 'not valid'],
      ]) {
        const res = await page.goto(url);
        expect(res.status(), what).toBe(status);
        await expect(page.getByTestId('error-message'), what).toContainText(text);
      }
      const answer = await wsJoin(page, room, '');
      expect(answer, 'a join without a token').toMatchObject({ type: 'error', code: 'token-required' });
      const wrong = await wsJoin(page, room, n.mint('elsewhere', 'bob'));
      expect(wrong, 'a join with a token for another room').toMatchObject({ type: 'error', code: 'token-wrong-room' });
      const api = await page.request.get(`${n.node.url}/api/cluster`);
      expect(api.status(), 'anonymous /api/cluster').toBe(401);
      expect(await api.text(), 'the refusal names no room').not.toContain(room);
      const admin = await page.request.get(`${n.node.url}/api/cluster`, {
        headers: { Authorization: `Bearer ${n.mint('*', 'ops', { grant: 'admin' })}` },
      });
      expect(admin.status(), '/api/cluster with an admin token').toBe(200);
      expect(await admin.text()).toContain(room);

      // The 1 s token has expired by now (plus the 5 s leeway).
      await sleep(Math.max(0, 7_000 - (Date.now() - t0)));
      const res = await page.goto(n.link(room, shortLived));
      expect(res.status(), 'an expired token').toBe(401);
      await expect(page.getByTestId('error-message')).toContainText('expired');
      await expect(alice.getByTestId('participant-count')).toHaveText('1');
    } finally {
      await pages.close();
      await n.stop();
    }
  });

  test('grants: a viewer receives but cannot publish or chat, a hidden one is not listed, a second session replaces the first', async ({ pages }, testInfo) => {
    const n = await tokenNode(testInfo);
    try {
      const room = `grants-${crypto.randomBytes(3).toString('hex')}`;
      const aliceLink = n.link(room, n.mint(room, 'alice', { name: 'Alice' }));
      const alice = await pages.open(aliceLink, 'alice');
      const viewer = await pages.open(n.link(room, n.mint(room, 'viewer', { name: 'Viewer', grant: 'subscribe' })), 'viewer');
      await expectConnected(alice);
      await expectConnected(viewer);

      await test.step('the viewer sees and decodes Alice, publishes nothing, cannot chat', async () => {
        await expectVideoDecoding(viewer, sel.tileVideo('Alice'), { label: "Alice's camera on the viewer's page" });
        for (const id of ['toggle-audio', 'toggle-video', 'share-screen']) {
          await expect(viewer.getByTestId(id), id).toBeDisabled();
        }
        await expect(viewer.getByTestId('chat-input')).toBeDisabled();
        expect(await viewer.evaluate(() => window.confab.pcs.publisher), "the viewer's publisher connection").toBeNull();
        await expect(itemOf(alice, 'Viewer')).toHaveCount(1);
        await expect(tileOf(alice, 'Viewer')).toHaveAttribute('data-video-muted', 'true');
      });

      await test.step('a hidden participant receives media and is listed nowhere', async () => {
        const ghost = await pages.open(n.link(room, n.mint(room, 'recorder', { name: 'Recorder', grant: 'hidden,subscribe' })), 'ghost');
        await expectConnected(ghost);
        await expectVideoDecoding(ghost, sel.tileVideo('Alice'), { label: "Alice's camera on the hidden page" });
        for (const page of [alice, viewer]) {
          await expect(page.getByTestId('participant-count')).toHaveText('2');
          await expect(itemOf(page, 'Recorder')).toHaveCount(0);
          await expect(tileOf(page, 'Recorder')).toHaveCount(0);
        }
      });

      await test.step("Alice's link opened again replaces her first session", async () => {
        const t0 = Date.now();
        const again = await pages.open(aliceLink, 'alice-again');
        await expectConnected(again);
        await expect(alice.getByTestId('error')).toContainText('joined this room again', { timeout: 10_000 });
        await expect(alice.getByTestId('connection-state')).toHaveText('disconnected');
        report(testInfo, 'second session connected, first one told it was replaced', Date.now() - t0);
        await expect(viewer.getByTestId('participant-count')).toHaveText('2');
        await expectVideoDecoding(viewer, sel.tileVideo('Alice'), { label: "Alice's camera from her new session" });
        await sleep(3_000);
        await expect(alice.getByTestId('connection-state'), 'the replaced page does not rejoin').toHaveText('disconnected');
        await expect(again.getByTestId('connection-state')).toHaveText('connected');
      });
    } finally {
      await pages.close();
      await n.stop();
    }
  });
});
