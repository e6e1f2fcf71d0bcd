// Test fixtures for confab's browser tests.
//
//   confab  a real bin/confab process on free loopback ports, started before
//           the test and stopped (SIGTERM, must exit 0) after it:
//           { url, nodeId, httpPort, udpPort, logs() }
//   join    join(room, name) opens the room page in a NEW browser context
//           (one context per participant, like separate browsers) and
//           returns the page; every context is closed after the test.
//
// Helpers: startConfab, roomURL, expectMediaFlowing, mediaStats, freeTCPPort,
// freeUDPPort. Cluster fixtures (Consul + several nodes) are in cluster.js.
const { test: base, expect } = require('@playwright/test');
const { spawn } = require('node:child_process');
const dgram = require('node:dgram');
const net = require('node:net');
const path = require('node:path');
const fs = require('node:fs');
const { track, terminate, exitStatus } = require('./procs');

const CONFAB_BIN = process.env.CONFAB_BIN || path.resolve(__dirname, '..', '..', 'bin', 'confab');

/** freeTCPPort returns a loopback TCP port that was free a moment ago. */
function freeTCPPort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** freeUDPPort returns a loopback UDP port that was free a moment ago. */
function freeUDPPort() {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket('udp4');
    sock.on('error', reject);
    sock.bind(0, '127.0.0.1', () => {
      const { port } = sock.address();
      sock.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * startConfab runs bin/confab on free ports (or the given ones) and resolves
 * once /healthz answers 200. The returned object's stop() sends SIGTERM and
 * rejects unless the process exits with status 0 within 15s; kill(graceMs)
 * sends SIGTERM, then SIGKILL after graceMs, and resolves with the exit
 * status. The process is killed when the test process exits in any case.
 *
 * Options: nodeId, extraArgs (appended to the flags), httpPort, udpPort
 * (default: free ports), httpHost and udpIP (the addresses the HTTP server
 * and the ICE UDP socket bind to, default 127.0.0.1; url uses httpHost),
 * turnPort (the embedded TURN server's port; default 0, none: tests run
 * many nodes at once, and the default port 3478 is one), readyTimeout (ms,
 * default 15s).
 */
async function startConfab({
  nodeId = 'e2e-node', extraArgs = [], httpPort, udpPort, httpHost = '127.0.0.1', udpIP = '127.0.0.1',
  turnPort = 0, readyTimeout = 15_000,
} = {}) {
  if (!fs.existsSync(CONFAB_BIN)) {
    throw new Error(`${CONFAB_BIN} does not exist; run 'make build' (or 'make e2e')`);
  }
  httpPort = httpPort || await freeTCPPort();
  udpPort = udpPort || await freeUDPPort();
  const args = [
    '--http-addr', `${httpHost}:${httpPort}`,
    '--udp-port', String(udpPort),
    '--udp-ip', udpIP,
    '--node-id', nodeId,
    '--log-level', 'debug',
    '--turn-port', String(turnPort),
    ...extraArgs,
  ];
  // Only the flags above configure the server: drop CONFAB_* from the env.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CONFAB_')));
  const proc = spawn(CONFAB_BIN, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  track(proc, `confab ${nodeId}`);
  let output = '';
  proc.stdout.on('data', (d) => { output += d; });
  proc.stderr.on('data', (d) => { output += d; });
  const spawnError = new Promise((resolve) => proc.once('error', resolve));
  spawnError.then((err) => { output += `\n[e2e] spawn error: ${err.message}\n`; });
  const exited = exitStatus(proc);
  let exitState = null;
  exited.then((s) => { exitState = s; });

  const url = `http://${httpHost}:${httpPort}`;
  const deadline = Date.now() + readyTimeout;
  for (;;) {
    if (exitState) {
      throw new Error(`confab ${nodeId} exited early (${JSON.stringify(exitState)}):\n${output}`);
    }
    try {
      const res = await fetch(`${url}/healthz`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await terminate(proc, { graceMs: 0, signal: 'SIGKILL' });
      throw new Error(`confab ${nodeId} did not answer ${url}/healthz within ${readyTimeout}ms:\n${output}`);
    }
    await sleep(100);
  }

  return {
    url,
    nodeId,
    httpPort,
    udpPort,
    turnPort,
    args,
    pid: proc.pid,
    logs: () => output,
    /** exited is the exit status, or null while the process runs. */
    exited: () => exitState,
    kill: (graceMs = 5_000) => terminate(proc, { graceMs }),
    /** signal sends sig (e.g. 'SIGKILL') without waiting; see wait(). */
    signal: (sig) => proc.kill(sig),
    /** wait resolves with { code, signal } once the process has exited. */
    wait: () => exited,
    async stop() {
      const status = await terminate(proc, { graceMs: 15_000 });
      if (status.killed) {
        throw new Error(`confab did not exit within 15s of SIGTERM:\n${output}`);
      }
      if (status.code !== 0) {
        throw new Error(`confab exited with ${JSON.stringify(status)} after SIGTERM:\n${output}`);
      }
    },
  };
}

/** roomURL is the page URL that joins room as name at once. */
function roomURL(server, room, name) {
  return `${server.url}/rooms/${encodeURIComponent(room)}?name=${encodeURIComponent(name)}`;
}

/**
 * serveFixture hands a started server to a test (the fixture's use), then
 * stops it; its log is attached when the test failed or the server did
 * not stop cleanly (which then fails the test).
 */
async function serveFixture(server, use, testInfo) {
  let stopErr = null;
  try {
    await use(server);
  } finally {
    try {
      await server.stop();
    } catch (err) {
      stopErr = err;
    }
    if (stopErr || testInfo.status !== testInfo.expectedStatus) {
      // A file (the reporter prints only the start of an inline body).
      const file = testInfo.outputPath('confab.log');
      fs.writeFileSync(file, server.logs());
      await testInfo.attach('confab.log', { path: file, contentType: 'text/plain' });
    }
  }
  if (stopErr) throw stopErr;
}

const test = base.extend({
  confab: async ({}, use, testInfo) => serveFixture(await startConfab(), use, testInfo),

  join: async ({ browser, confab }, use, testInfo) => {
    const contexts = [];
    const consoles = [];
    // query (e.g. '&simulcast=0') is appended to the page URL.
    await use(async (room, name, { query = '' } = {}) => {
      const context = await browser.newContext({ permissions: ['camera', 'microphone'] });
      contexts.push(context);
      const page = await context.newPage();
      const log = [];
      consoles.push({ name, log });
      page.on('console', (m) => log.push(`[${m.type()}] ${m.text()}`));
      page.on('pageerror', (e) => log.push(`[pageerror] ${e.message}`));
      const res = await page.goto(roomURL(confab, room, name) + query);
      expect(res && res.status(), `GET room page for ${name}`).toBe(200);
      return page;
    });
    if (testInfo.status !== testInfo.expectedStatus) {
      for (const { name, log } of consoles) {
        await testInfo.attach(`console-${name}.log`, { body: log.join('\n'), contentType: 'text/plain' });
      }
    }
    for (const context of contexts) {
      await context.close().catch(() => {});
    }
  },
});

/**
 * mediaStats reads the inbound-rtp entries of the page's subscriber peer
 * connection (window.confab.pcs.subscriber, per the page contract).
 */
async function mediaStats(page) {
  return page.evaluate(async () => {
    const pc = window.confab && window.confab.pcs && window.confab.pcs.subscriber;
    if (!pc) return null;
    const report = await pc.getStats();
    const out = [];
    report.forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      out.push({
        id: s.id,
        kind: s.kind || s.mediaType,
        trackIdentifier: s.trackIdentifier,
        bytesReceived: s.bytesReceived || 0,
        packetsReceived: s.packetsReceived || 0,
        framesDecoded: s.framesDecoded || 0,
      });
    });
    return out;
  });
}

/**
 * flowProblems compares two mediaStats samples and lists what is wrong:
 * fewer streams than expected, or a stream whose counters did not rise
 * (video: bytesReceived and framesDecoded; audio: bytesReceived).
 */
function flowProblems(before, after, { video, audio }) {
  if (!before || !after) return ['window.confab.pcs.subscriber is missing'];
  const problems = [];
  const prev = new Map(before.map((s) => [s.id, s]));
  const videos = after.filter((s) => s.kind === 'video');
  const audios = after.filter((s) => s.kind === 'audio');
  if (videos.length < video) problems.push(`${videos.length} video inbound-rtp, want ${video}`);
  if (audios.length < audio) problems.push(`${audios.length} audio inbound-rtp, want ${audio}`);
  for (const s of after) {
    const p = prev.get(s.id);
    if (!p) {
      problems.push(`${s.kind} ${s.trackIdentifier}: new since the first sample`);
      continue;
    }
    if (!(s.bytesReceived > p.bytesReceived)) {
      problems.push(`${s.kind} ${s.trackIdentifier}: bytesReceived stuck at ${s.bytesReceived}`);
    }
    if (s.kind === 'video' && !(s.framesDecoded > p.framesDecoded)) {
      problems.push(`video ${s.trackIdentifier}: framesDecoded stuck at ${s.framesDecoded}`);
    }
  }
  return problems;
}

/**
 * expectMediaFlowing asserts that the page receives live media: it samples
 * getStats twice ~2s apart and requires, for EVERY inbound video stream, that
 * bytesReceived and framesDecoded rose and, for every inbound audio stream,
 * that bytesReceived rose; and that there are at least `remotes` video and
 * `remotes` audio streams. Polls for up to `timeout` ms (default 20s).
 */
async function expectMediaFlowing(page, { remotes = 1, timeout = 20_000, label = '' } = {}) {
  const deadline = Date.now() + timeout;
  let problems = [];
  let last = null;
  while (Date.now() < deadline) {
    const before = await mediaStats(page);
    await sleep(2_000);
    const after = await mediaStats(page);
    last = after;
    problems = flowProblems(before, after, { video: remotes, audio: remotes });
    if (problems.length === 0) return after;
  }
  throw new Error(
    `media not flowing${label ? ` for ${label}` : ''} after ${timeout}ms:\n  ${problems.join('\n  ')}\n` +
    `last inbound-rtp sample: ${JSON.stringify(last)}`,
  );
}

module.exports = {
  test, expect, startConfab, serveFixture, roomURL, mediaStats, expectMediaFlowing, flowProblems, sleep, freeTCPPort, freeUDPPort,
};
