// Audio between Chromium participants: redundant audio (RED, RFC 2198)
// when the browser offers it (Chromium does), plain Opus with
// --audio-red off; in both cases the audio decodes (getStats). Chromium's
// getStats names opus+red "audio/opus", so what is sent is read from the
// server's answer (RED first makes Chromium send it) and from the codec
// the server logs for the producer.
const { test, expect, startConfab, roomURL, expectMediaFlowing, sleep } = require('../lib/confab');

/**
 * audioStats returns the audio inbound-rtp (subscriber) or outbound-rtp
 * (publisher) entries of the page with their codec's mime type.
 */
async function audioStats(page, which) {
  return page.evaluate(async (which) => {
    const pc = window.confab && window.confab.pcs && window.confab.pcs[which];
    if (!pc) return [];
    const report = await pc.getStats();
    const codecs = {};
    report.forEach((s) => { if (s.type === 'codec') codecs[s.id] = s.mimeType; });
    const out = [];
    report.forEach((s) => {
      if ((s.type === 'inbound-rtp' || s.type === 'outbound-rtp') && s.kind === 'audio') {
        out.push({
          mime: codecs[s.codecId] || null,
          bytes: s.type === 'inbound-rtp' ? s.bytesReceived : s.bytesSent,
          samples: s.totalSamplesReceived || 0,
          concealed: s.concealedSamples || 0,
        });
      }
    });
    return out;
  }, which);
}

/** answerAudio returns the payload types of the publisher's answer's audio m-line. */
async function answerAudio(page) {
  return page.evaluate(() => {
    const pc = window.confab.pcs.publisher;
    const line = pc.currentRemoteDescription.sdp.split('\r\n').find((l) => l.startsWith('m=audio'));
    return line.split(' ').slice(3);
  });
}

/** producerCodecs returns the audio codecs the server logged for its producers. */
const producerCodecs = (logs) => logs.split('\n').filter((l) => /producer started.*kind=audio/.test(l))
  .map((l) => (l.match(/codec=(\S+)/) || [])[1]);

/**
 * checkAudio asserts that the speaker was answered with wantFirst as its
 * first audio payload type and that listener decodes the speaker's audio.
 */
async function checkAudio(speaker, listener, wantFirst) {
  await expectMediaFlowing(listener, { remotes: 1, label: 'listener' });
  const types = await answerAudio(speaker);
  const a = await audioStats(listener, 'subscriber');
  await sleep(2_000);
  const b = await audioStats(listener, 'subscriber');
  console.log(`audio: answer's payload types ${types.join(' ')}; received ${JSON.stringify(b)}`);
  expect(types[0], "first payload type of the speaker's answer").toBe(wantFirst);
  expect(b.length, 'audio streams received').toBe(1);
  const samples = b[0].samples - a[0].samples;
  const concealed = b[0].concealed - a[0].concealed;
  expect(b[0].bytes - a[0].bytes, 'audio bytes received in 2 s').toBeGreaterThan(4_000);
  // 2 s at 48 kHz is 96,000 samples; most of them decoded, not concealed.
  expect(samples, 'audio samples played in 2 s').toBeGreaterThan(60_000);
  expect(concealed / samples, 'share of concealed samples').toBeLessThan(0.3);
}

test.describe('audio', () => {
  test('Chromium sends and receives redundant audio (RED), and it decodes', async ({ join, confab }) => {
    const alice = await join('red', 'alice');
    const bob = await join('red', 'bob');
    await checkAudio(alice, bob, '63');
    await checkAudio(bob, alice, '63');
    expect(producerCodecs(confab.logs()), 'audio producers on the server').toEqual(['audio/red', 'audio/red']);
  });

  test('with --audio-red off the audio is plain Opus', async ({ browser }) => {
    const server = await startConfab({ nodeId: 'opus-only', extraArgs: ['--audio-red', 'off'] });
    const contexts = [];
    try {
      const pages = [];
      for (const name of ['alice', 'bob']) {
        const ctx = await browser.newContext({ permissions: ['camera', 'microphone'] });
        contexts.push(ctx);
        const page = await ctx.newPage();
        await page.goto(roomURL(server, 'opus', name));
        pages.push(page);
      }
      await checkAudio(pages[0], pages[1], '111');
      expect(producerCodecs(server.logs()), 'audio producers on the server').toEqual(['audio/opus', 'audio/opus']);
    } finally {
      for (const c of contexts) await c.close().catch(() => {});
      await server.stop();
    }
  });
});
