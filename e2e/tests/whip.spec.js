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
const esbuild = require('esbuild');
const { test: base, expect } = require('@playwright/test');
const { startConfab, roomURL, serveFixture, sleep } = require('../lib/confab');
const { startCluster } = require('../lib/cluster');
const { sel, withPages, expectVideoDecoding, expectConnected, report } = require('../lib/meeting');

const CONFAB_BIN = process.env.CONFAB_BIN || path.resolve(__dirname, '..', '..', 'bin', 'confab');
const test = withPages(base);

/** uniqueRoom returns a fresh room name with the given prefix. */
const uniqueRoom = (prefix) => `${prefix}-${crypto.randomBytes(3).toString('hex')}`;

let bundled = null;
/**
 * eyevinnBundle is Eyevinn's WHIP client and WebRTC player bundled as one
 * script (window.Eyevinn.WHIPClient, window.Eyevinn.WebRTCPlayer).
 */
function eyevinnBundle() {
  if (!bundled) {
    const out = esbuild.buildSync({
      stdin: {
        contents: "export { WHIPClient } from '@eyevinn/whip-web-client';\nexport { WebRTCPlayer } from '@eyevinn/webrtc-player';",
        resolveDir: path.join(__dirname, '..'),
        loader: 'js',
      },
      bundle: true,
      format: 'iife',
      globalName: 'Eyevinn',
      platform: 'browser',
      write: false,
      logLevel: 'silent',
    });
    bundled = out.outputFiles[0].text;
  }
  return bundled;
}

/**
 * whipPage opens a page on node (its /healthz, so that the WHIP endpoint
 * is same-origin), loads the bundled client and starts publishing the
 * fake camera and microphone as name into room (token: the bearer key).
 * With expectRefusal it resolves with the response to the client's POST;
 * otherwise with the page, once the client has its resource URL.
 */
async function whipPage(pages, node, room, name, { token = '', expectRefusal = false } = {}) {
  const page = await pages.open(`${node.url}/healthz`, `whip-${name}`);
  await page.addScriptTag({ content: eyevinnBundle() });
  const endpoint = `${node.url}/rooms/${room}/whip?name=${encodeURIComponent(name)}`;
  const posted = page.waitForResponse((r) => r.url().startsWith(`${node.url}/rooms/${room}/whip`) && r.request().method() === 'POST');
  const start = page.evaluate(async ({ endpoint, token }) => {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: true });
    const opts = { iceServers: [] };
    if (token) opts.authkey = token;
    const client = new window.Eyevinn.WHIPClient({ endpoint, opts });
    window.whip = client;
    await client.ingest(stream);
    return client.getResourceUrl();
  }, { endpoint, token });
  if (expectRefusal) {
    start.catch(() => {}); // the client never gets a resource URL
    return posted;
  }
  posted.catch(() => {}); // only the refusal case waits for it
  const resource = await start;
  expect(resource, 'the resource URL of the WHIP session').toContain(`/rooms/${room}/whip/`);
  return page;
}

/** roomPage opens the room page on node as name and waits until it is connected. */
async function roomPage(pages, node, room, name) {
  const page = await pages.open(roomURL(node, room, name), name);
  await expectConnected(page);
  return page;
}

/**
 * whepVideo samples the inbound video of a WHEP connection: the watch
 * page's (window.confab.pcs.whep) or the Eyevinn player's.
 */
const whepVideo = (page) => page.evaluate(async () => {
  const pc = (window.confab && window.confab.pcs && window.confab.pcs.whep) || (window.player && window.player.peer);
  if (!pc || typeof pc.getStats !== 'function') return null;
  let out = null;
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && (s.kind || s.mediaType) === 'video') {
      out = { framesDecoded: s.framesDecoded || 0, bytesReceived: s.bytesReceived || 0, frameWidth: s.frameWidth || 0 };
    }
  });
  return out;
});

/** expectWatchDecoding waits until a WHEP page's video decodes between two samples 1 s apart. */
async function expectWatchDecoding(page, timeout = 20_000) {
  const t0 = Date.now();
  let last = null;
  for (;;) {
    const a = await whepVideo(page);
    await sleep(1_000);
    const b = await whepVideo(page);
    last = { a, b };
    if (a && b && b.framesDecoded > a.framesDecoded && b.bytesReceived > a.bytesReceived && b.frameWidth > 0) {
      return { fps: b.framesDecoded - a.framesDecoded, frameWidth: b.frameWidth, ms: Date.now() - t0 };
    }
    if (Date.now() - t0 > timeout) throw new Error(`watch page: no decoding video within ${timeout} ms; last ${JSON.stringify(last)}`);
  }
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
