// Adaptive video across nodes: three simulcast publishers on node a, a
// viewer on node b inside a network namespace whose link is limited to
// 600 kbit/s. Node b asks node a only for the layers its viewer needs, so
// the link between the nodes carries low layers while the viewer is
// limited. The numbers are attached (adaptive-cluster.json) and printed.
const crypto = require('node:crypto');
const { test: shaped, expect, startShapedConfab } = require('../lib/shaped');
const { startConfab, expectMediaFlowing, sleep } = require('../lib/confab');
const { startConsul, fetchJSON } = require('../lib/cluster');
const { sampleInbound } = require('../lib/stats');

// The `confab` fixture is node b (reachable from the namespace); nodeA and
// the Consul agent come with it.
const test = shaped.extend({
  confab: async ({ netns }, use, testInfo) => {
    const consul = await startConsul();
    const secret = crypto.randomBytes(16).toString('hex');
    const common = ['--consul', consul.addr, '--cluster-secret', secret, '--placement', 'off'];
    const nodes = [];
    try {
      const a = await startConfab({ nodeId: 'a', extraArgs: common });
      nodes.push(a);
      const b = await startShapedConfab(netns, { nodeId: 'b', extraArgs: common });
      nodes.push(b);
      // The nodes advertise their own HTTP address; a's is loopback, b's the
      // host end of the veth, both reachable from the host.
      await use({ ...b, nodeA: a, consul });
    } finally {
      if (testInfo.status !== testInfo.expectedStatus) {
        for (const n of nodes) {
          require('node:fs').writeFileSync(testInfo.outputPath(`confab-${n.nodeId}.log`), n.logs());
        }
      }
      for (const n of nodes) await n.stop().catch(() => {});
      await consul.stop();
    }
  },
});

const videoTracks = (s) => (s ? s.tracks.filter((t) => t.kind === 'video') : []);

/** inVideo returns node b's incoming piped video producers from /api/cluster. */
async function inVideo(node) {
  const st = await fetchJSON(`${node.url}/api/cluster`);
  const out = [];
  for (const l of st.links || []) {
    for (const p of l.producers || []) {
      if (p.direction === 'in' && p.kind === 'video') out.push(p);
    }
  }
  return out;
}

/** linkBitrate sums the bitrate of every layer flowing per producer. */
const linkBitrate = (prods) => prods.reduce((n, p) => n + (p.layers || []).reduce((m, l) => m + l.bitrate, 0), 0);

test('a limited viewer on another node gets lower layers, and the link carries only those', async ({
  netns, joinShaped, browser, confab,
}, testInfo) => {
  test.setTimeout(240_000);
  const roomOnA = (name) => `${confab.nodeA.url}/rooms/xnode?name=${encodeURIComponent(name)}`;
  const contexts = [];
  for (const name of ['alice', 'bob', 'carol']) {
    const ctx = await browser.newContext({ permissions: ['camera', 'microphone'] });
    contexts.push(ctx);
    const page = await ctx.newPage();
    await page.goto(roomOnA(name));
  }
  try {
    const viewer = await joinShaped('xnode', 'viewer', { contextOptions: { deviceScaleFactor: 3 } });
    await expect(viewer.getByTestId('remote-tile')).toHaveCount(3, { timeout: 45_000 });
    await expectMediaFlowing(viewer, { remotes: 3, label: 'viewer on b', timeout: 45_000 });

    // Open link: the viewer's big tiles pull the top layers over the link.
    const start = Date.now();
    let open = null;
    while (Date.now() - start < 90_000) {
      const ts = videoTracks(await sampleInbound(viewer));
      if (ts.length === 3 && ts.every((t) => t.frameWidth >= 1280)) {
        open = { ms: Date.now() - start, link: await inVideo(confab) };
        break;
      }
      await sleep(500);
    }
    const openBitrate = open ? linkBitrate(open.link) : null;
    console.log(`open: top layers on b after ${open && open.ms} ms; link video ${openBitrate} bit/s`,
      JSON.stringify(open && open.link.map((p) => ({ wanted: p.wanted, layers: p.layers.map((l) => [l.layer, l.bitrate]) }))));
    expect(open, '1280-wide frames from every publisher on node b').not.toBeNull();

    await netns.setRate(600);
    const t0 = Date.now();
    let low = null;
    while (Date.now() - t0 < 20_000) {
      const ts = videoTracks(await sampleInbound(viewer));
      if (ts.length === 3 && ts.every((t) => t.frameWidth > 0 && t.frameWidth < 1280)) {
        low = { ms: Date.now() - t0, widths: ts.map((t) => t.frameWidth) };
        break;
      }
      await sleep(250);
    }
    console.log(`600 kbit/s: lower layers on b after ${low && low.ms} ms`, low && low.widths);
    expect(low, 'lower layers for the limited viewer').not.toBeNull();
    // After the dynacast hold, node b asks a for the low layers only.
    await sleep(5_000);
    const limited = await inVideo(confab);
    const limitedBitrate = linkBitrate(limited);
    const top = limited.flatMap((p) => p.layers || []).filter((l) => l.layer === 2);
    console.log(`600 kbit/s: link video ${limitedBitrate} bit/s`,
      JSON.stringify(limited.map((p) => ({ wanted: p.wanted, layers: p.layers.map((l) => [l.layer, l.bitrate]) }))));
    await testInfo.attach('adaptive-cluster.json', {
      body: JSON.stringify({ open, openBitrate, low, limited, limitedBitrate }, null, 2), contentType: 'application/json',
    });
    expect(limited.length, 'piped video producers on b').toBe(3);
    expect(top, 'top layers still crossing the link for the limited viewer').toEqual([]);
    expect(limitedBitrate, 'link video bitrate while the only viewer is limited').toBeLessThan(openBitrate / 2);
  } finally {
    for (const c of contexts) await c.close().catch(() => {});
  }
});
