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
  test('simulcast layers follow the viewer\'s link: top when open, lower at 600 kbit/s, back up when it reopens', async ({
    netns, join, joinShaped, confab,
  }, testInfo) => {
    test.setTimeout(240_000);
    testInfo.confabLog = () => confab.logs();
    const pubs = [];
    for (const name of ['alice', 'bob', 'carol']) pubs.push(await join('adaptive', name));
    // deviceScaleFactor 3: each of the three tiles is over 1200 device
    // pixels wide, so the tile size allows the top layer.
    const viewer = await joinShaped('adaptive', 'viewer', { contextOptions: { deviceScaleFactor: 3 } });
    await expect(viewer.getByTestId('remote-tile')).toHaveCount(3, { timeout: 30_000 });
    await expectMediaFlowing(viewer, { remotes: 3, label: 'viewer' });

    // Every publisher sends three encodings (simulcast).
    const o1 = await sampleOutbound(pubs[0]);
    await sleep(2_000);
    const sent = outboundRates(o1, await sampleOutbound(pubs[0])).filter((t) => t.kind === 'video');
    console.log('publisher alice:', JSON.stringify(sent));
    expect(sent.map((t) => t.rid).sort()).toEqual(['f', 'h', 'q']);

    const all1280 = (ts) => ts.length === 3 && ts.every((t) => t.frameWidth >= 1280);
    const open = await waitVideo(viewer, all1280, 60_000);
    console.log(`open link: top layer from all three after ${open.ms} ms: ${widths(open.tracks)}`);
    expect(open.met, `1280-wide frames from every publisher (${widths(open.tracks)})`).toBe(true);

    await netns.setRate(600);
    const down = await waitVideo(viewer, (ts) => ts.length === 3 && ts.every((t) => t.frameWidth < 1280), 15_000);
    console.log(`600 kbit/s: lower layers after ${down.ms} ms: ${widths(down.tracks)}`);
    expect(down.met, `lower layers at 600 kbit/s (${widths(down.tracks)})`).toBe(true);
    await sleep(3_000);
    const limited = await measureInbound(viewer, 20_000);
    const lv = limited.tracks.filter((t) => t.kind === 'video');
    console.log('600 kbit/s for 20 s:', JSON.stringify(lv.map((t) => ({ p: t.participantName, kbps: t.kbps, fps: t.fps, freezes: t.freezes, w: t.frameWidth }))));

    await netns.clearRate();
    const up = await waitVideo(viewer, (ts) => ts.some((t) => t.frameWidth >= 1280), 30_000);
    console.log(`reopened: a top layer again after ${up.ms} ms: ${widths(up.tracks)}`);
    const upAll = await waitVideo(viewer, all1280, 60_000);
    console.log(`reopened: all top after ${up.ms + upAll.ms} ms: ${widths(upAll.tracks)}`);
    await testInfo.attach('adaptive-layers.json', {
      body: JSON.stringify({ open, down, limited: lv, up, upAll }, null, 2), contentType: 'application/json',
    });
  });
});
