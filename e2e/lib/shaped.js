// Fixtures for browser tests in shaped networks (lib/netns.js): one confab
// node, publishers in the ordinary Playwright browser on loopback, and
// subscribers in a Chromium inside a network namespace whose link to the
// host can be rate-limited at any time.
//
//   netns       a fresh namespace per test (createNetns), destroyed after it
//               (browsers inside are closed, processes killed, veth and
//               namespace deleted), also when the test fails
//   confab      (replaces the one of confab.js) a node whose HTTP server and
//               ICE UDP socket bind to the host end of the veth
//               (netns.hostAddr), so browsers in the namespace reach it and
//               its only ICE candidate is that address; a loopback forwarder
//               serves the same port on 127.0.0.1, so url is a secure origin
//               for the publishers. { url, nsURL, udpIP, ... as confab.js }
//   join        join(room, name) of confab.js: a new context of the ordinary
//               (unshaped) browser on confab.url
//   nsBrowser   Chromium inside netns (launched on first use), with
//               confab.nsURL treated as a secure origin
//   joinShaped  joinShaped(room, name, { publish = false, contextOptions })
//               opens the room on confab.nsURL in a new context of
//               nsBrowser (contextOptions go to newContext, e.g.
//               deviceScaleFactor); without publish, getUserMedia fails
//               there and the participant only subscribes
//
// A failed test gets the namespace's addresses and qdiscs, the consoles of
// the shaped pages and confab's log attached.
const { test: base, expect, startConfab, serveFixture, roomURL, freeTCPPort } = require('./confab');
const { createNetns, launchInNetns, forwardTCP } = require('./netns');

/**
 * startShapedConfab starts a confab node reachable from inside ns (HTTP and
 * ICE on ns.hostAddr) and from loopback (HTTP forwarded from 127.0.0.1 on
 * the same port). Options as startConfab (nodeId, extraArgs, ...).
 */
async function startShapedConfab(ns, opts = {}) {
  const httpPort = opts.httpPort || await freeTCPPort();
  // The forwarder first: startConfab polls /healthz on loopback.
  const fwd = await forwardTCP({ listenHost: '127.0.0.1', listenPort: httpPort, host: ns.hostAddr, port: httpPort });
  let server;
  try {
    server = await startConfab({ ...opts, httpPort, httpHost: ns.hostAddr, udpIP: ns.hostAddr });
  } catch (err) {
    await fwd.close();
    throw err;
  }
  return {
    ...server,
    url: `http://127.0.0.1:${httpPort}`,
    nsURL: server.url,
    udpIP: ns.hostAddr,
    async stop() {
      try {
        await server.stop();
      } finally {
        await fwd.close();
      }
    },
    async kill(graceMs) {
      try {
        return await server.kill(graceMs);
      } finally {
        await fwd.close();
      }
    },
  };
}

const test = base.extend({
  netns: async ({}, use, testInfo) => {
    const ns = await createNetns();
    try {
      await use(ns);
    } finally {
      if (testInfo.status !== testInfo.expectedStatus) {
        await testInfo.attach('netns.txt', { body: await ns.describe(), contentType: 'text/plain' });
      }
      await ns.destroy();
    }
  },

  confab: async ({ netns }, use, testInfo) => serveFixture(await startShapedConfab(netns), use, testInfo),

  nsBrowser: async ({ netns, confab, launchOptions }, use) => {
    const browser = await launchInNetns(netns, { launchOptions, secureOrigins: [confab.nsURL] });
    try {
      await use(browser);
    } finally {
      await browser.close().catch(() => {});
    }
  },

  joinShaped: async ({ nsBrowser, confab }, use, testInfo) => {
    const contexts = [];
    const consoles = [];
    await use(async (room, name, { publish = false, contextOptions = {} } = {}) => {
      const context = await nsBrowser.newContext({ permissions: publish ? ['camera', 'microphone'] : [], ...contextOptions });
      contexts.push(context);
      if (!publish) {
        await context.addInitScript(() => {
          const refuse = () => Promise.reject(new DOMException('no devices in this test', 'NotFoundError'));
          if (navigator.mediaDevices) navigator.mediaDevices.getUserMedia = refuse;
        });
      }
      const page = await context.newPage();
      const log = [];
      consoles.push({ name, log });
      page.on('console', (m) => log.push(`${new Date().toISOString()} [${m.type()}] ${m.text()}`));
      page.on('pageerror', (e) => log.push(`${new Date().toISOString()} [pageerror] ${e.message}`));
      const res = await page.goto(roomURL({ url: confab.nsURL }, room, name));
      expect(res && res.status(), `GET room page for ${name} (shaped)`).toBe(200);
      return page;
    });
    if (testInfo.status !== testInfo.expectedStatus) {
      for (const { name, log } of consoles) {
        await testInfo.attach(`console-shaped-${name}.log`, { body: log.join('\n'), contentType: 'text/plain' });
      }
    }
    for (const context of contexts) {
      await context.close().catch(() => {});
    }
  },
});

module.exports = { test, expect, startShapedConfab };
