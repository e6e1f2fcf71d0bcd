// WHIP ingest and WHEP playback with clients nobody here wrote: Eyevinn's
// WHIP web client (@eyevinn/whip-web-client from npm, bundled for the
// browser with esbuild when first needed) publishes Chromium's fake camera
// and microphone into a room; browser participants on the room page decode
// its video (getStats) on the same node and on another node of a cluster;
// with token auth it needs its bearer key; the watch page
// (/rooms/{room}/watch, WHEP) and Eyevinn's WebRTC player
// (@eyevinn/webrtc-player, WHEP) decode it too.
const path = require('node:path');
const fs = require('node:fs');
const os = require('node:os');
const crypto = require('node:crypto');
const { execFileSync } = require('node:child_process');
const { test: base, expect } = require('@playwright/test');
const { startConfab, roomURL, serveFixture } = require('../lib/confab');
const { startCluster } = require('../lib/cluster');
const { sel, withPages, expectVideoDecoding, expectConnected, report } = require('../lib/meeting');
const { eyevinnBundle, whipPage, expectWatchDecoding } = require('../lib/whip');

const CONFAB_BIN = process.env.CONFAB_BIN || path.resolve(__dirname, '..', '..', 'bin', 'confab');
const test = withPages(base);

/** uniqueRoom returns a fresh room name with the given prefix. */
const uniqueRoom = (prefix) => `${prefix}-${crypto.randomBytes(3).toString('hex')}`;

/** roomPage opens the room page on node as name and waits until it is connected. */
async function roomPage(pages, node, room, name) {
  const page = await pages.open(roomURL(node, room, name), name);
  await expectConnected(page);
  return page;
}

test.describe('WHIP and WHEP with third-party clients', () => {
  test('single node: a WHIP publisher is decoded by a participant and by the watch page; DELETE removes it', async ({ pages }, testInfo) => {
    await serveFixture(await startConfab({ nodeId: 'whip-node' }), async (node) => {
      const room = uniqueRoom('whip');
      const alice = await roomPage(pages, node, room, 'Alice');
      const t0 = Date.now();
      const whip = await whipPage(pages, node, room, 'Encoder');
      const seen = await expectVideoDecoding(alice, sel.tileVideo('Encoder'), { label: 'the WHIP tile' });
      report(testInfo, 'WHIP publish to decoding at a participant', Date.now() - t0);
      report(testInfo, 'WHIP video at the participant', `${seen.fps} fps`);

      const watch = await pages.open(`${node.url}/rooms/${room}/watch?participant=Encoder`, 'watch');
      await expect(watch.getByTestId('watch-state')).toHaveText('connected');
      const w = await expectWatchDecoding(watch);
      report(testInfo, 'WHEP watch page video', `${w.fps} fps`);
      report(testInfo, 'WHEP watch page frame width', `${w.frameWidth} px`);

      await whip.evaluate(() => window.whip.destroy());
      await expect(alice.locator(sel.tile('Encoder')), 'the WHIP tile after DELETE').toHaveCount(0, { timeout: 10_000 });
    }, testInfo);
  });

  test('the watch page without ?participant= plays the publisher (the default choice)', async ({ pages }, testInfo) => {
    await serveFixture(await startConfab({ nodeId: 'whep-node' }), async (node) => {
      const room = uniqueRoom('whep');
      await whipPage(pages, node, room, 'Studio');
      const watch = await pages.open(`${node.url}/rooms/${room}/watch`, 'watch');
      const w = await expectWatchDecoding(watch);
      report(testInfo, 'WHEP (default) watch page video', `${w.fps} fps`);
      expect(await watch.getByTestId('watch-state').getAttribute('data-state')).toBe('connected');
    }, testInfo);
  });

  test("Eyevinn's WebRTC player plays a room over WHEP", async ({ pages }, testInfo) => {
    await serveFixture(await startConfab({ nodeId: 'player-node' }), async (node) => {
      const room = uniqueRoom('player');
      await whipPage(pages, node, room, 'Broadcaster');
      const page = await pages.open(`${node.url}/healthz`, 'player');
      await page.addScriptTag({ content: eyevinnBundle() });
      await page.evaluate(async (endpoint) => {
        const video = document.createElement('video');
        video.muted = true;
        video.autoplay = true;
        video.playsInline = true;
        document.body.appendChild(video);
        window.player = new window.Eyevinn.WebRTCPlayer({ video, type: 'whep', iceServers: [] });
        await window.player.load(new URL(endpoint));
      }, `${node.url}/rooms/${room}/whep?participant=Broadcaster`);
      const w = await expectWatchDecoding(page);
      report(testInfo, 'WHEP with the Eyevinn player', `${w.fps} fps`);
      report(testInfo, 'WHEP with the Eyevinn player frame width', `${w.frameWidth} px`);
    }, testInfo);
  });

  test('two nodes: WHIP into n1 is decoded by a participant on n2', async ({ pages }, testInfo) => {
    const cluster = await startCluster({ nodes: 2, nodeArgs: ['--placement', 'off'] });
    try {
      const room = uniqueRoom('whipc');
      const bob = await roomPage(pages, cluster.node('n2'), room, 'Bob');
      const t0 = Date.now();
      await whipPage(pages, cluster.node('n1'), room, 'Remote Encoder');
      const seen = await expectVideoDecoding(bob, sel.tileVideo('Remote Encoder'), { timeout: 30_000, label: 'the piped WHIP tile' });
      report(testInfo, 'WHIP on n1 to decoding on n2', Date.now() - t0);
      report(testInfo, 'piped WHIP video on n2', `${seen.fps} fps`);
    } finally {
      const problems = await cluster.stop();
      if (problems.length) {
        await testInfo.attach('cluster.log', { body: Object.entries(cluster.logs()).map(([k, v]) => `----- ${k} -----\n${v}`).join('\n') });
      }
      expect(problems, 'cluster shutdown').toEqual([]);
    }
  });

  test('token auth: without the bearer key 401, with a publish token it publishes', async ({ pages }, testInfo) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'confab-keys-'));
    const keys = path.join(dir, 'api-keys');
    fs.writeFileSync(keys, `e2e ${crypto.randomBytes(24).toString('hex')}\n`, { mode: 0o600 });
    const mint = (room, identity, name, grant) => execFileSync(CONFAB_BIN, ['token', '--api-keys-file', keys, '--room', room,
      '--identity', identity, '--name', name, '--grant', grant, '--ttl', '1h'], { encoding: 'utf8' }).trim().split('\n').pop();
    try {
      const node = await startConfab({ nodeId: 'whip-auth', extraArgs: ['--auth', 'token', '--api-keys-file', keys] });
      await serveFixture(node, async () => {
        const room = uniqueRoom('whipt');
        const viewer = await pages.open(`${node.url}/rooms/${room}?token=${encodeURIComponent(mint(room, 'viewer', 'Viewer', 'subscribe'))}`, 'Viewer');
        await expectConnected(viewer);

        const answer = await whipPage(pages, node, room, 'Keyless', { expectRefusal: true });
        expect(answer.status(), "the keyless client's WHIP POST").toBe(401);
        expect(answer.headers()['www-authenticate'], 'the 401 challenge').toContain('Bearer');

        await whipPage(pages, node, room, 'ignored', { token: mint(room, 'encoder', 'Token Encoder', 'publish') });
        const seen = await expectVideoDecoding(viewer, sel.tileVideo('Token Encoder'), { label: 'the token WHIP tile' });
        report(testInfo, 'token WHIP video at the viewer', `${seen.fps} fps`);
      }, testInfo);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
