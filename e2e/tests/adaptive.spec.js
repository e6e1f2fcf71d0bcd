// Adaptive video in real browsers: simulcast publishers on loopback, a
// viewer inside a network namespace whose link is rate-limited with tc at
// run time (lib/shaped.js). The numbers each test measured are attached
// (adaptive-*.json) and printed on one line, for docs/media.md.
const { test, expect } = require('../lib/shaped');
const { expectMediaFlowing, sleep } = require('../lib/confab');
const { sampleInbound, measureInbound, sampleOutbound, outboundRates } = require('../lib/stats');

/** videoTracks returns the viewer's inbound video tracks of a sample. */
const videoTracks = (s) => (s ? s.tracks.filter((t) => t.kind === 'video') : []);

/**
 * waitVideo polls the viewer's inbound video every 250 ms until pred(tracks)
 * holds or timeout passes; resolves with { ms, met, tracks }.
 */
async function waitVideo(page, pred, timeout) {
  const start = Date.now();
  for (;;) {
    const tracks = videoTracks(await sampleInbound(page));
    if (pred(tracks)) return { ms: Date.now() - start, met: true, tracks };
    if (Date.now() - start > timeout) return { ms: Date.now() - start, met: false, tracks };
    await sleep(250);
  }
}

const widths = (tracks) => tracks.map((t) => `${t.participantName}:${t.frameWidth}`).join(' ');

test.afterEach(async ({}, testInfo) => {
  // The whole server log (the attachment on failure is cut short).
  if (testInfo.confabLog) require('node:fs').writeFileSync(testInfo.outputPath('confab-full.log'), testInfo.confabLog());
});

test.describe('adaptive video', () => {
  // The collapse: one simulcast publisher, a viewer whose link
  // goes 3 Mbit/s -> 300 kbit/s -> 3 Mbit/s. One publisher keeps the box's
  // CPU out of the measurement: three 720p simulcast encoders and three
  // 720p decoders starve a 2-core machine, and the viewer's own packet
  // drops then look like congestion to the estimator.
  test('a collapsing link drops to the low layer and climbs back when it returns', async ({
    netns, join, joinShaped, confab,
  }, testInfo) => {
    test.setTimeout(240_000);
    testInfo.confabLog = () => confab.logs();
    await netns.setRate(3000);
    const alice = await join('collapse', 'alice');
    const viewer = await joinShaped('collapse', 'viewer', { contextOptions: { deviceScaleFactor: 3 } });
    await expectMediaFlowing(viewer, { remotes: 1, label: 'viewer' });

    // The publisher sends three encodings (simulcast).
    const o1 = await sampleOutbound(alice);
    await sleep(2_000);
    const sent = outboundRates(o1, await sampleOutbound(alice)).filter((t) => t.kind === 'video');
    console.log('publisher alice:', JSON.stringify(sent));
    expect(sent.map((t) => t.rid).sort()).toEqual(['f', 'h', 'q']);

    const top = (ts) => ts.length === 1 && ts[0].frameWidth >= 1280;
    const open = await waitVideo(viewer, top, 60_000);
    console.log(`3 Mbit/s: top layer after ${open.ms} ms: ${widths(open.tracks)}`);
    expect(open.met, `1280-wide frames at 3 Mbit/s (${widths(open.tracks)})`).toBe(true);

    await netns.setRate(300);
    // The goal is 2 s; the bound leaves room for a loaded box (the time is
    // printed and attached).
    const down = await waitVideo(viewer, (ts) => ts.length === 1 && ts[0].frameWidth > 0 && ts[0].frameWidth <= 320, 10_000);
    console.log(`300 kbit/s: low layer after ${down.ms} ms: ${widths(down.tracks)}`);
    expect(down.met, `the low layer at 300 kbit/s (${widths(down.tracks)})`).toBe(true);
    await sleep(2_000);
    const limited = (await measureInbound(viewer, 10_000)).tracks.find((t) => t.kind === 'video');
    console.log('300 kbit/s for 10 s:', JSON.stringify({ kbps: limited.kbps, fps: limited.fps, freezes: limited.freezes, w: limited.frameWidth }));
    expect(limited.fps, 'frames/s decoded at 300 kbit/s').toBeGreaterThan(5);

    await netns.setRate(3000);
    const up = await waitVideo(viewer, top, 40_000);
    console.log(`3 Mbit/s again: top layer after ${up.ms} ms: ${widths(up.tracks)}`);
    expect(up.met, `the top layer once the link returned (${widths(up.tracks)})`).toBe(true);
    await testInfo.attach('adaptive-collapse.json', {
      body: JSON.stringify({ open, down, limited, up }, null, 2), contentType: 'application/json',
    });
  });

  // The room: three simulcast publishers; an unconstrained viewer
  // decodes 1280-wide frames from each, then behind 600 kbit/s (before
  // adaptive video it decoded 0 to 0.7 frames/s from each) every picture
  // keeps moving. The top layers are checked one tile at a time (the
  // others hidden, as in a speaker view): three 720p decoders at once
  // starve a 2-core box, whose dropped packets the estimator then takes
  // for congestion (see the collapse test).
  test('three publishers: top layers from each when open, every picture moving at 600 kbit/s', async ({
    netns, join, joinShaped, confab,
  }, testInfo) => {
    test.setTimeout(330_000);
    testInfo.confabLog = () => confab.logs();
    const names = ['alice', 'bob', 'carol'];
    const pubs = [];
    for (const name of names) pubs.push(await join('limited', name));
    // The publishers do not watch each other (their tiles hidden): six
    // decoders and the middle layers they would pull are CPU the 2-core
    // box needs for the viewer.
    for (const [i, page] of pubs.entries()) {
      await expect(page.getByTestId('remote-tile')).toHaveCount(2, { timeout: 30_000 });
      for (const other of names) if (other !== names[i]) await setTileShown(page, other, false);
    }
    const viewer = await joinShaped('limited', 'viewer', { contextOptions: { deviceScaleFactor: 3 } });
    await expect(viewer.getByTestId('remote-tile')).toHaveCount(3, { timeout: 30_000 });
    await expectMediaFlowing(viewer, { remotes: 3, label: 'viewer' });

    const open = {};
    for (const name of names) {
      for (const other of names) await setTileShown(viewer, other, other === name);
      const r = await waitVideo(viewer, (ts) => (tileVideo({ tracks: ts }, name) || {}).frameWidth >= 1280, 60_000);
      open[name] = r.ms;
      console.log(`open link, only ${name} shown: 1280-wide frames after ${r.ms} ms: ${widths(r.tracks)}`);
      expect(r.met, `1280-wide frames from ${name} (${widths(r.tracks)})`).toBe(true);
    }
    for (const name of names) await setTileShown(viewer, name, true);

    await netns.setRate(600);
    await sleep(5_000);
    const limited = await measureInbound(viewer, 20_000);
    const lv = limited.tracks.filter((t) => t.kind === 'video');
    console.log('600 kbit/s for 20 s:', JSON.stringify(lv.map((t) => ({ p: t.participantName, kbps: t.kbps, fps: t.fps, freezes: t.freezes, w: t.frameWidth }))));
    await testInfo.attach('adaptive-three.json', { body: JSON.stringify({ open, limited: lv }, null, 2), contentType: 'application/json' });
    expect(lv.length).toBe(3);
    for (const t of lv) {
      expect(t.frameWidth, `layer of ${t.participantName} at 600 kbit/s`).toBeLessThan(1280);
      expect(t.fps, `frames/s decoded from ${t.participantName} at 600 kbit/s`).toBeGreaterThan(5);
      expect(t.freezes, `freezes of ${t.participantName} in 20 s at 600 kbit/s`).toBeLessThan(20);
    }
  });
});

/** tileVideo returns the inbound video track of the named participant. */
const tileVideo = (sample, name) => videoTracks(sample).find((t) => t.participantName === name);

/** audioOf returns the inbound audio track of the named participant. */
const audioOf = (sample, name) => sample.tracks.find((t) => t.kind === 'audio' && t.participantName === name);

/** setTileShown hides (display:none) or shows the remote tile of name. */
async function setTileShown(page, name, shown) {
  await page.evaluate(({ name, shown }) => {
    const tile = document.querySelector(`[data-testid="remote-tile"][data-participant-name="${name}"]`);
    if (!tile) throw new Error(`no tile of ${name}`);
    tile.style.display = shown ? '' : 'none';
  }, { name, shown });
}

test.describe('adaptive video: visibility and dynacast', () => {
  test('a hidden tile receives no video (audio goes on) and shows a frame soon after it is shown again', async ({
    join, confab,
  }, testInfo) => {
    test.setTimeout(120_000);
    testInfo.confabLog = () => confab.logs();
    await join('hide', 'alice');
    const viewer = await join('hide', 'viewer');
    await expectMediaFlowing(viewer, { remotes: 1, label: 'viewer' });

    await setTileShown(viewer, 'alice', false);
    await sleep(2_000); // the report, the pause, packets in flight
    const a = await sampleInbound(viewer);
    await sleep(3_000);
    const b = await sampleInbound(viewer);
    const videoBytes = tileVideo(b, 'alice').bytesReceived - tileVideo(a, 'alice').bytesReceived;
    const audioBytes = audioOf(b, 'alice').bytesReceived - audioOf(a, 'alice').bytesReceived;
    console.log(`hidden for 3 s: ${videoBytes} video bytes, ${audioBytes} audio bytes`);
    expect(videoBytes, 'video bytes while the tile is hidden').toBeLessThan(2_000);
    expect(audioBytes, 'audio bytes while the tile is hidden').toBeGreaterThan(5_000);

    // Hidden long enough for the publisher to have paused its layers.
    await sleep(2_000);
    const before = tileVideo(await sampleInbound(viewer), 'alice').framesDecoded;
    const shownAt = Date.now();
    await setTileShown(viewer, 'alice', true);
    let firstFrameMs = null;
    while (Date.now() - shownAt < 10_000) {
      const t = tileVideo(await sampleInbound(viewer), 'alice');
      if (t.framesDecoded > before) {
        firstFrameMs = Date.now() - shownAt;
        break;
      }
      await sleep(20);
    }
    console.log(`shown again: first new frame after ${firstFrameMs} ms`);
    await testInfo.attach('adaptive-hidden.json', {
      body: JSON.stringify({ videoBytes, audioBytes, firstFrameMs }), contentType: 'application/json',
    });
    // The time is a measurement (printed above; about 0.3-0.6 s on a quiet
    // box, 2 s seen under load), not a pass/fail bound: a frame must come
    // within the 10 s of the loop.
    expect(firstFrameMs, 'a frame after the tile is shown again (within 10 s)').not.toBeNull();
  });

  test('a publisher alone sends no video, and sends again when a viewer arrives', async ({ join, confab }, testInfo) => {
    test.setTimeout(120_000);
    testInfo.confabLog = () => confab.logs();
    const alice = await join('alone', 'alice');
    await expect(alice.getByTestId('connection-state')).toHaveText('connected', { timeout: 30_000 });
    const sentVideo = async () => {
      const s = await sampleOutbound(alice);
      return s.tracks.filter((t) => t.kind === 'video').reduce((n, t) => n + t.bytesSent, 0);
    };
    const sentAudio = async () => {
      const s = await sampleOutbound(alice);
      return s.tracks.filter((t) => t.kind === 'audio').reduce((n, t) => n + t.bytesSent, 0);
    };
    await sleep(4_000); // the hold (2 s) and the encodings message
    const v0 = await sentVideo();
    const a0 = await sentAudio();
    await sleep(3_000);
    const aloneVideo = (await sentVideo()) - v0;
    const aloneAudio = (await sentAudio()) - a0;
    console.log(`alone for 3 s: ${aloneVideo} video bytes sent, ${aloneAudio} audio bytes`);
    expect(aloneVideo, 'video bytes a lone publisher sends in 3 s').toBeLessThan(2_000);

    const v1 = await sentVideo();
    const viewer = await join('alone', 'viewer');
    await expectMediaFlowing(viewer, { remotes: 1, label: 'viewer' });
    const resumed = (await sentVideo()) - v1;
    console.log(`with a viewer: ${resumed} video bytes sent`);
    expect(resumed, 'video bytes sent once a viewer arrived').toBeGreaterThan(20_000);
    await testInfo.attach('adaptive-alone.json', {
      body: JSON.stringify({ aloneVideo, aloneAudio, resumed }), contentType: 'application/json',
    });
  });
});
