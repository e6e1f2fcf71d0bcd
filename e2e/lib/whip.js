// Helpers for the WHIP and WHEP browser tests (tests/whip.spec.js,
// tests/whep.spec.js), docs/protocol.md, WHIP and WHEP:
//
//   eyevinnBundle()        Eyevinn's WHIP client and WebRTC player (npm)
//                          bundled for the browser with esbuild, once
//   whipPage(...)          a page publishing the fake camera and microphone
//                          with Eyevinn's WHIP client
//   jsWhipPage(...)        a page publishing with its own RTCPeerConnection
//                          (for what the Eyevinn client lacks: ICE restart)
//   whepVideo / expectWatchDecoding
//                          getStats() of the inbound video of a WHEP page
//                          (the watch page or the Eyevinn player)
//   serverUfrag(page)      the node's ice-ufrag in a page's remote answer
const path = require('node:path');
const esbuild = require('esbuild');
const { expect } = require('@playwright/test');
const { sleep } = require('./meeting');

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

/**
 * jsWhipPage opens a page on node that publishes the fake camera
 * (width x height) and microphone as name into room with its own
 * RTCPeerConnection (window.whipPC; window.whipResource is the session's
 * resource URL) and the page module /static/js/iceRestart.js
 * (window.iceRestart). Resolves with the page once the answer is applied.
 */
async function jsWhipPage(pages, node, room, name, { width = 640, height = 360 } = {}) {
  const page = await pages.open(`${node.url}/healthz`, `jswhip-${name}`);
  const endpoint = `${node.url}/rooms/${room}/whip?name=${encodeURIComponent(name)}`;
  const status = await page.evaluate(async ({ endpoint, width, height }) => {
    const ice = await import('/static/js/iceRestart.js');
    window.iceRestart = ice;
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width, height }, audio: true });
    const pc = new RTCPeerConnection();
    window.whipPC = pc;
    for (const t of stream.getTracks()) pc.addTransceiver(t, { direction: 'sendonly' });
    await pc.setLocalDescription(await pc.createOffer());
    await ice.gathered(pc);
    const res = await fetch(endpoint, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
    if (res.status !== 201) return res.status;
    window.whipResource = new URL(res.headers.get('Location'), endpoint).toString();
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    return res.status;
  }, { endpoint, width, height });
  expect(status, `the WHIP POST of ${name}`).toBe(201);
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
      out = {
        framesDecoded: s.framesDecoded || 0, bytesReceived: s.bytesReceived || 0,
        frameWidth: s.frameWidth || 0, frameHeight: s.frameHeight || 0,
      };
    }
  });
  return out;
});

/**
 * expectWatchDecoding waits until a WHEP page's video decodes between two
 * samples 1 s apart (and, with accept, until accept(sample) holds for the
 * second sample). Returns { fps, frameWidth, frameHeight, ms }.
 */
async function expectWatchDecoding(page, { timeout = 20_000, accept = () => true, label = 'watch page' } = {}) {
  const t0 = Date.now();
  let last = null;
  for (;;) {
    const a = await whepVideo(page);
    await sleep(1_000);
    const b = await whepVideo(page);
    last = { a, b };
    if (a && b && b.framesDecoded > a.framesDecoded && b.bytesReceived > a.bytesReceived && b.frameWidth > 0 && accept(b)) {
      return { fps: b.framesDecoded - a.framesDecoded, frameWidth: b.frameWidth, frameHeight: b.frameHeight, ms: Date.now() - t0 };
    }
    if (Date.now() - t0 > timeout) throw new Error(`${label}: no (accepted) decoding video within ${timeout} ms; last ${JSON.stringify(last)}`);
  }
}

/**
 * serverUfrag returns the node's ice-ufrag in the current remote answer of
 * the page's WHIP connection (jsWhipPage) or else its WHEP connection
 * (the watch page).
 */
const serverUfrag = (page) => page.evaluate(() => {
  const pc = window.whipPC || window.confab.pcs.whep;
  const m = /a=ice-ufrag:(\S+)/.exec(pc.currentRemoteDescription.sdp);
  return m && m[1];
});

module.exports = { eyevinnBundle, whipPage, jsWhipPage, whepVideo, expectWatchDecoding, serverUfrag };
