// Shaped network: a viewer inside a network namespace whose downstream link
// is rate-limited with tc at run time (lib/netns.js, lib/shaped.js), three
// publishers on loopback, unshaped. It proves the harness: with the limit
// the viewer receives no more than the link carries, without it clearly
// more. The publishers send one encoding each (simulcast off), so the
// open baseline does not depend on how fast the server's layer choice
// climbs. 250 kbit/s is below three such streams, so under the limit the viewer
// loses packets and freezes whatever the server does; that is recorded
// (attachment shaped-stats.json, annotations), not asserted. How the layers
// adapt to a viewer's link is tested in adaptive.spec.js.
const fs = require('node:fs');
const { test, expect } = require('../lib/shaped');
const { expectMediaFlowing, sleep } = require('../lib/confab');
const { measureInbound, measureInboundUntil, selectedCandidatePair } = require('../lib/stats');

// kbit/s on the wire (tbf counts Ethernet/IP/UDP/RTP headers; getStats'
// bytesReceived counts payload only). Three of Chromium's fake cameras send
// about 600 kbit/s of video together, so the limit must be well below that.
const LIMIT = 250;

/** summary is the part of a measureInbound result worth keeping. */
const summary = (m) => ({
  seconds: m.seconds,
  video: m.video,
  audio: m.audio,
  tracks: m.tracks.filter((t) => t.kind === 'video').map((t) => ({
    participant: t.participantName, kbps: t.kbps, fps: t.fps, frames: t.frames, freezes: t.freezes,
    packetsLost: t.packetsLost, frameWidth: t.frameWidth, frameHeight: t.frameHeight,
  })),
});

test.describe('shaped network', () => {
  test(`a viewer behind a ${LIMIT} kbit/s link receives at most the link rate`, async ({
    netns, join, joinShaped,
  }, testInfo) => {
    // One encoding each (no simulcast): the open baseline is every
    // publisher's full stream, whatever the viewer's bandwidth estimate.
    for (const name of ['alice', 'bob', 'carol']) await join('shaped', name, { query: '&simulcast=0' });
    const viewer = await joinShaped('shaped', 'viewer', { contextOptions: { deviceScaleFactor: 3 } });
    await expect(viewer.getByTestId('connection-state')).toHaveText('connected', { timeout: 30_000 });
    await expect(viewer.getByTestId('remote-tile')).toHaveCount(3);
    await expectMediaFlowing(viewer, { remotes: 3, label: 'viewer' });

    // The viewer's media comes over the veth: its only way to the server's
    // address (the server's only ICE candidate).
    const pair = await selectedCandidatePair(viewer);
    expect(pair, 'selected candidate pair of the viewer').not.toBeNull();
    expect(pair.remote.address).toBe(netns.hostAddr);

    // The unlimited baseline: wait (at most 20s) until the viewer gets
    // more than the limit will allow; the publishers' bandwidth estimates
    // ramp up after they join, and a busy box may be slower.
    const clearlyAbove = (m) => m.video.kbps > 1.5 * LIMIT;
    const open = await measureInboundUntil(viewer, { windowMs: 4_000, timeout: 20_000, until: clearlyAbove });

    await netns.setRate(LIMIT);
    await sleep(2_000); // the queue fills, what was in flight drains
    const limited = await measureInbound(viewer, 6_000);
    const qdisc = await netns.qdiscStats();

    await netns.clearRate();
    await sleep(1_000); // the backlog and retransmissions pass
    const reopened = await measureInboundUntil(viewer, {
      windowMs: 4_000, timeout: 20_000, until: (m) => clearlyAbove(m) && m.video.kbps > 2 * limited.video.kbps,
    });

    const results = {
      limitKbit: LIMIT,
      open: { ...summary(open), attempts: open.attempts },
      limited: summary(limited),
      reopened: { ...summary(reopened), attempts: reopened.attempts },
      qdisc: qdisc.down,
    };
    const file = testInfo.outputPath('shaped-stats.json');
    fs.writeFileSync(file, JSON.stringify(results, null, 2));
    await testInfo.attach('shaped-stats.json', { path: file, contentType: 'application/json' });
    const line = [['open', open], ['limited', limited], ['reopened', reopened]].map(([phase, m]) => {
      const text = `video ${m.video.kbps} kbit/s, ${m.video.fps} frames/s, ${m.video.freezes} freezes, `
        + `${m.video.packetsLost} lost; audio ${m.audio.kbps} kbit/s`;
      testInfo.annotations.push({ type: phase, description: text });
      return `${phase}: ${text}`;
    });
    console.log(`shaped (limit ${LIMIT} kbit/s, ${qdisc.down.drops} packets dropped): ${line.join(' | ')}`);

    const limitedKbps = limited.video.kbps + limited.audio.kbps;
    expect(limited.video.tracks, 'video streams while limited').toBe(3);
    expect(limitedKbps, 'payload received while limited').toBeGreaterThan(0);
    expect(limitedKbps, 'payload received while limited').toBeLessThanOrEqual(1.2 * LIMIT);
    expect(qdisc.down.kind).toBe('tbf');
    expect(qdisc.down.drops, 'packets dropped by the limit').toBeGreaterThan(0);
    for (const [phase, m] of [['open', open], ['reopened', reopened]]) {
      expect(m.video.kbps, `video received ${phase}`).toBeGreaterThan(1.5 * LIMIT);
      expect(m.video.kbps, `video received ${phase} vs limited`).toBeGreaterThan(2 * limited.video.kbps);
    }
  });
});
