// WHEP playback beyond one publisher on one node, and ICE restarts of WHIP
// and WHEP sessions (docs/protocol.md, WHIP and WHEP):
//
//   - ICE restart: neither Eyevinn client restarts ICE (the WHIP client
//     only trickles, the player closes on failure), so a page publishes
//     with its own RTCPeerConnection and the page module iceRestart.js,
//     and the watch page restarts through the same module
//     (window.confab.restartIce); after each restart the node's ICE
//     credentials in the page's answer are new and the watch page still
//     decodes (getStats). Then the node's side of the watch page's ICE
//     session is broken and the page recovers by itself.
//   - active speaker: two room pages with cameras of different aspect
//     ratios talk in turn (a WebAudio oscillator as the microphone); the
//     watch page without ?participant= follows the speaker: its decoded
//     frames take the speaker's aspect ratio and keep being decoded.
//   - across nodes: a WHIP publisher on n1 of a two-node cluster (real
//     Consul), the watch page on n2.
const crypto = require('node:crypto');
const { test: base, expect } = require('@playwright/test');
const { startConfab, roomURL, serveFixture } = require('../lib/confab');
const { startCluster } = require('../lib/cluster');
const { withPages, expectConnected, report, playTone, setTone } = require('../lib/meeting');
const { whipPage, jsWhipPage, expectWatchDecoding, serverUfrag } = require('../lib/whip');

const test = withPages(base);

/** uniqueRoom returns a fresh room name with the given prefix. */
const uniqueRoom = (prefix) => `${prefix}-${crypto.randomBytes(3).toString('hex')}`;

/** aspect is width / height of a getStats sample. */
const aspect = (s) => s.frameWidth / s.frameHeight;

/**
 * setCamera makes the room page's published camera capture width x height
 * (Chromium's fake camera scales to any size).
 */
const setCamera = (page, width, height) => page.evaluate(async ({ width, height }) => {
  const sender = window.confab.pcs.publisher.getSenders().find((s) => s.track && s.track.kind === 'video');
  if (!sender) throw new Error('no video sender on the publisher');
  await sender.track.applyConstraints({ width: { exact: width }, height: { exact: height }, resizeMode: 'crop-and-scale' });
  const s = sender.track.getSettings();
  return `${s.width}x${s.height}`;
}, { width, height });

test.describe('WHEP: ICE restart, active speaker, across nodes', () => {
  test('ICE restart via PATCH: the watch page and a WHIP publisher restart, video keeps decoding', async ({ pages }, testInfo) => {
    await serveFixture(await startConfab({ nodeId: 'ice-node' }), async (node) => {
      const room = uniqueRoom('ice');
      const pub = await jsWhipPage(pages, node, room, 'Restarter');
      const watch = await pages.open(`${node.url}/rooms/${room}/watch?participant=Restarter`, 'watch');
      await expect(watch.getByTestId('watch-state')).toHaveAttribute('data-state', 'connected', { timeout: 20_000 });
      await expectWatchDecoding(watch);

      // The watch page restarts (WHEP).
      const before = await serverUfrag(watch);
      let t0 = Date.now();
      const etag = await watch.evaluate(() => window.confab.restartIce());
      report(testInfo, 'WHEP ICE restart PATCH round trip', Date.now() - t0);
      expect(etag, 'the ETag of the restarted WHEP session').toMatch(/^".+"$/);
      const after = await serverUfrag(watch);
      expect(after, "the node's ICE ufrag after the WHEP restart").not.toBe(before);
      expect(await watch.evaluate(() => window.confab.iceRestarts)).toBe(1);
      let w = await expectWatchDecoding(watch, { label: 'watch page after its ICE restart' });
      report(testInfo, 'watch page video after its ICE restart', `${w.fps} fps`);
      await expect(watch.getByTestId('watch-state')).toHaveAttribute('data-state', 'connected');

      // The node's side of the watch page's ICE session is broken (a
      // restart to credentials the page does not know, PATCHed from here):
      // the page sees ICE disconnect, restarts by itself and decodes again.
      const resource = await watch.evaluate(() => window.confab.resource);
      const broke = await fetch(resource, {
        method: 'PATCH',
        headers: { 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': '*' },
        body: 'a=ice-ufrag:brokenbroken\r\na=ice-pwd:brokenbrokenbrokenbroken\r\n',
      });
      expect(broke.status, 'the breaking restart').toBe(200);
      t0 = Date.now();
      await expect.poll(() => watch.evaluate(() => window.confab.iceRestarts), { timeout: 30_000 }).toBe(2);
      report(testInfo, 'broken ICE session -> the watch page restarted ICE', Date.now() - t0);
      w = await expectWatchDecoding(watch, { label: 'watch page after recovering by itself' });
      report(testInfo, 'watch page video after recovering by itself', `${w.fps} fps`);

      // The publisher restarts (WHIP); what the watch page decodes now
      // crossed the publisher's new ICE session (the node dropped the old
      // one when it restarted).
      const pubBefore = await serverUfrag(pub);
      t0 = Date.now();
      const pubETag = await pub.evaluate(() => window.iceRestart.restartIce(window.whipPC, window.whipResource));
      report(testInfo, 'WHIP ICE restart PATCH round trip', Date.now() - t0);
      expect(pubETag, 'the ETag of the restarted WHIP session').toMatch(/^".+"$/);
      expect(await serverUfrag(pub), "the node's ICE ufrag after the WHIP restart").not.toBe(pubBefore);
      await expect.poll(() => pub.evaluate(() => window.whipPC.iceConnectionState), { timeout: 10_000 }).toMatch(/^(connected|completed)$/);
      w = await expectWatchDecoding(watch, { label: 'watch page after the publisher ICE restart' });
      report(testInfo, 'watch page video after the publisher ICE restart', `${w.fps} fps`);
    }, testInfo);
  });

  test('active speaker: the watch page follows whoever talks, video continues after each switch', async ({ pages }, testInfo) => {
    await serveFixture(await startConfab({ nodeId: 'speaker-node' }), async (node) => {
      const room = uniqueRoom('spk');
      // 16:9 and 4:3 cameras: the decoded aspect ratio tells who is shown
      // (an encoder that scales down under load keeps the ratio).
      const cams = { wide: [640, 360], square: [320, 240] };
      const talkers = {};
      for (const name of Object.keys(cams)) {
        const page = await pages.open(`${roomURL(node, room, name)}&simulcast=0`, name);
        await expectConnected(page);
        expect(await setCamera(page, ...cams[name]), `${name}'s camera`).toBe(cams[name].join('x'));
        await page.getByTestId('connection-state').click(); // user activation for the AudioContext
        expect(await playTone(page, 0), 'AudioContext state').toBe('running');
        talkers[name] = page;
      }
      const isShowing = (name) => (s) => Math.abs(aspect(s) - cams[name][0] / cams[name][1]) < 0.05;
      // While nobody talks: the first publisher.
      const watch = await pages.open(`${node.url}/rooms/${room}/watch`, 'watch');
      await expectWatchDecoding(watch, { accept: isShowing('wide'), label: 'the watch page showing the first publisher' });

      for (const [talker, silent] of [['square', 'wide'], ['wide', 'square'], ['square', 'wide']]) {
        await setTone(talkers[silent], 0);
        const t0 = Date.now();
        await setTone(talkers[talker], 0.5);
        const w = await expectWatchDecoding(watch, { accept: isShowing(talker), label: `the watch page showing ${talker}` });
        report(testInfo, `${talker} talks -> the watch page decodes them`, Date.now() - t0);
        report(testInfo, `${talker} on the watch page`, `${w.frameWidth}x${w.frameHeight}, ${w.fps} fps`);
        // And it stays on the talker, still decoding.
        await expectWatchDecoding(watch, { accept: isShowing(talker), timeout: 3_000, label: `the watch page still showing ${talker}` });
      }
      await expect(watch.getByTestId('watch-state')).toHaveAttribute('data-state', 'connected');
    }, testInfo);
  });

  test('two nodes: WHIP into n1, the watch page on n2 decodes it', async ({ pages }, testInfo) => {
    const cluster = await startCluster({ nodes: 2, nodeArgs: ['--placement', 'off'] });
    try {
      const room = uniqueRoom('whepc');
      const t0 = Date.now();
      await whipPage(pages, cluster.node('n1'), room, 'Studio One');
      const watch = await pages.open(`${cluster.node('n2').url}/rooms/${room}/watch`, 'watch-n2');
      await expect(watch.getByTestId('node-id')).toHaveText('n2');
      const w = await expectWatchDecoding(watch, { timeout: 30_000, label: 'the watch page on n2' });
      report(testInfo, 'WHIP on n1 to decoding on the watch page on n2', Date.now() - t0);
      report(testInfo, 'watch page on n2', `${w.frameWidth}x${w.frameHeight}, ${w.fps} fps`);
      await expect(watch.getByTestId('watch-state')).toHaveAttribute('data-state', 'connected');
    } finally {
      const problems = await cluster.stop();
      if (problems.length) {
        await testInfo.attach('cluster.log', { body: Object.entries(cluster.logs()).map(([k, v]) => `----- ${k} -----\n${v}`).join('\n') });
      }
      expect(problems, 'cluster shutdown').toEqual([]);
    }
  });
});
