// Cluster fixtures for confab's browser tests: a real Consul dev agent and
// several real bin/confab nodes on free loopback ports.
//
//   startConsul()         `consul agent -dev` on free loopback ports, resolved
//                         once it has a leader and accepts sessions:
//                         { addr, url, httpPort, logs(), kv(prefix), stop() }
//   startCluster({nodes}) Consul plus nodes n1..nN sharing a random cluster
//                         secret (passed in a file), resolved once every node answers /healthz
//                         and every node's /api/cluster lists all N nodes
//                         alive: { consul, nodes: [confab...], node(id),
//                         status(id), statuses(), logs(), stop() }
//
// Fixtures (test): `cluster` (worker scope: started once per worker, stopped
// after the worker's last test, i.e. afterAll), `join(node, room, name)`
// (opens the room page on that node in a new browser context), and an
// automatic fixture that attaches every process log, /api/cluster of every
// node and the browser consoles to a failed test.
//
// Every process is tracked by procs.js: it is killed on worker exit even when
// the fixtures could not stop it.
const { test: base, expect } = require('@playwright/test');
const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { startConfab, roomURL, freeTCPPort, freeUDPPort, sleep } = require('./confab');
const { track, terminate, exitStatus } = require('./procs');

const CONSUL_BIN = process.env.CONFAB_CONSUL_BIN || path.resolve(__dirname, '..', '..', 'bin', 'consul');

/**
 * clusterSecret returns a fresh random cluster secret and the path of a
 * file (mode 0600, in a private temporary directory removed when the
 * process exits) holding it, for --cluster-secret-file: confab refuses the
 * secret on the command line.
 */
function clusterSecret() {
  const secret = crypto.randomBytes(32).toString('hex');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'confab-e2e-secret-'));
  const file = path.join(dir, 'cluster-secret');
  fs.writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return { secret, file };
}

/** distinctPorts returns n distinct loopback ports from pick(). */
async function distinctPorts(n, pick, taken = new Set()) {
  const out = [];
  while (out.length < n) {
    const p = await pick();
    if (taken.has(p)) continue;
    taken.add(p);
    out.push(p);
  }
  return out;
}

/**
 * attachText writes body to the test's output directory (test-results/...)
 * and attaches that file, so it survives with any reporter.
 */
async function attachText(testInfo, name, body, contentType = 'text/plain') {
  const file = testInfo.outputPath(name);
  await fs.promises.writeFile(file, body);
  await testInfo.attach(name, { path: file, contentType });
}

/** fetchJSON GETs url and returns the parsed body; throws on non-2xx. */
async function fetchJSON(url, { timeout = 5_000, headers = {} } = {}) {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeout), headers });
  const text = await res.text();
  if (!res.ok) throw new Error(`GET ${url}: ${res.status} ${text}`);
  return JSON.parse(text);
}

/**
 * startConsul starts `consul agent -dev` (in memory) bound to 127.0.0.1 with
 * HTTP, Serf LAN/WAN and server RPC on free ports (DNS and gRPC off) and
 * waits until the agent has a leader and can create a session.
 */
async function startConsul({ readyTimeout = 60_000, ports = null } = {}) {
  if (!fs.existsSync(CONSUL_BIN)) {
    throw new Error(`${CONSUL_BIN} does not exist; run 'make consul' (or 'make test')`);
  }
  // ports (from a previous agent's .ports) restarts an agent on the same
  // ports; a dev agent starts with no data.
  const [httpPort, serfLAN, serfWAN, server] = ports
    ? [ports.httpPort, ports.serfLAN, ports.serfWAN, ports.server]
    : await distinctPorts(4, freeTCPPort);
  const args = [
    'agent', '-dev',
    '-node', `confab-e2e-${httpPort}`,
    '-bind', '127.0.0.1', '-client', '127.0.0.1',
    '-http-port', String(httpPort),
    '-dns-port', '-1', '-grpc-port', '-1', '-grpc-tls-port', '-1',
    '-serf-lan-port', String(serfLAN),
    '-serf-wan-port', String(serfWAN),
    '-server-port', String(server),
    '-log-level', 'info',
  ];
  const proc = spawn(CONSUL_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  track(proc, 'consul');
  let output = '';
  proc.stdout.on('data', (d) => { output += d; });
  proc.stderr.on('data', (d) => { output += d; });
  proc.once('error', (err) => { output += `\n[e2e] spawn error: ${err.message}\n`; });
  let exitState = null;
  exitStatus(proc).then((s) => { exitState = s; });

  const addr = `127.0.0.1:${httpPort}`;
  const url = `http://${addr}`;
  const deadline = Date.now() + readyTimeout;
  let last = 'not started';
  for (;;) {
    if (exitState) {
      throw new Error(`consul exited early (${JSON.stringify(exitState)}):\n${output}`);
    }
    try {
      // The leader endpoint answers "" until a leader is elected.
      const leader = await fetchJSON(`${url}/v1/status/leader`, { timeout: 2_000 });
      if (leader) {
        const res = await fetch(`${url}/v1/session/create`, {
          method: 'PUT', body: JSON.stringify({ TTL: '10s', Name: 'e2e-probe' }),
          signal: AbortSignal.timeout(2_000),
        });
        if (res.ok) {
          const { ID } = await res.json();
          await fetch(`${url}/v1/session/destroy/${ID}`, { method: 'PUT', signal: AbortSignal.timeout(2_000) });
          break;
        }
        last = `session create: ${res.status} ${await res.text()}`;
      } else {
        last = 'no leader yet';
      }
    } catch (err) {
      last = err.message;
    }
    if (Date.now() > deadline) {
      await terminate(proc, { graceMs: 0, signal: 'SIGKILL' });
      throw new Error(`consul on ${addr} not ready within ${readyTimeout}ms (${last}):\n${output}`);
    }
    await sleep(200);
  }

  return {
    addr,
    url,
    httpPort,
    ports: { httpPort, serfLAN, serfWAN, server },
    pid: proc.pid,
    logs: () => output,
    /** signal sends sig (e.g. 'SIGKILL') to the agent without waiting. */
    signal: (sig) => proc.kill(sig),
    /** wait resolves with { code, signal } once the agent has exited. */
    wait: () => exitStatus(proc),
    exited: () => exitState,
    /** kv lists the keys under prefix (recursively); [] when there are none. */
    async kv(prefix) {
      const res = await fetch(`${url}/v1/kv/${prefix}?keys`, { signal: AbortSignal.timeout(5_000) });
      if (res.status === 404) return [];
      if (!res.ok) throw new Error(`consul kv ${prefix}: ${res.status} ${await res.text()}`);
      return res.json();
    },
    /** stop kills the agent (SIGTERM, SIGKILL after 5s) and waits for it. */
    stop: () => terminate(proc, { graceMs: 5_000 }),
  };
}

/**
 * startCluster starts Consul and `nodes` confab nodes n1..nN, each with its
 * own HTTP and UDP port on 127.0.0.1, advertising its own URL, all sharing a
 * random 64-hex-digit cluster secret (in a file, see clusterSecret). It resolves once every node answers
 * /healthz and every node's /api/cluster lists all N nodes as alive
 * (statusHeaders go with those requests, e.g. an admin token's
 * Authorization for nodes with --auth token).
 */
async function startCluster({ nodes: n = 3, readyTimeout = 45_000, nodeArgs = [], statusHeaders = {} } = {}) {
  let consul = await startConsul();
  // Logs of processes that were replaced (restartNode, restartConsul).
  const oldLogs = {};
  let specs = [];
  const nodeOptions = (s) => ({
    ...s,
    readyTimeout,
    extraArgs: [
      '--consul', consul.addr,
      '--advertise-addr', `http://127.0.0.1:${s.httpPort}`,
      '--cluster-secret-file', secretFile,
      ...nodeArgs,
    ],
  });
  const { secret, file: secretFile } = clusterSecret();
  const started = [];
  const cluster = {
    get consul() { return consul; },
    secret,
    nodes: started,
    node(id) {
      const node = started.find((x) => x.nodeId === id);
      if (!node) throw new Error(`no node ${id}`);
      return node;
    },
    /** status GETs /api/cluster of node id. */
    status: (id) => fetchJSON(`${cluster.node(id).url}/api/cluster`, { headers: statusHeaders }),
    /** statuses GETs /api/cluster of every node: { [nodeId]: status }. */
    async statuses() {
      const all = await Promise.all(started.map((x) => cluster.status(x.nodeId)));
      return Object.fromEntries(started.map((x, i) => [x.nodeId, all[i]]));
    },
    /** logs returns { name: log } for consul and every node. */
    logs() {
      const out = { consul: (oldLogs.consul || '') + consul.logs() };
      for (const x of started) out[x.nodeId] = (oldLogs[x.nodeId] || '') + x.logs();
      return out;
    },
    /**
     * restartNode starts node id again with the same node id, ports and
     * flags (the previous process must have exited; its log is kept in
     * front of the new one). Resolves once /healthz answers.
     */
    async restartNode(id) {
      const i = started.findIndex((x) => x.nodeId === id);
      const old = started[i];
      if (!old.exited()) throw new Error(`restartNode(${id}): the node is still running`);
      const spec = specs.find((s) => s.nodeId === id);
      oldLogs[id] = `${oldLogs[id] || ''}${old.logs()}\n----- ${id} exited ${JSON.stringify(old.exited())}; restarted at ${new Date().toISOString()} -----\n`;
      started[i] = await startConfab(nodeOptions(spec));
      return started[i];
    },
    /**
     * restartConsul starts a fresh dev agent (no data) on the ports of the
     * previous one, which must have exited. Resolves once it has a leader.
     */
    async restartConsul() {
      if (!consul.exited()) throw new Error('restartConsul: the agent is still running');
      oldLogs.consul = `${oldLogs.consul || ''}${consul.logs()}\n----- consul exited ${JSON.stringify(consul.exited())}; restarted at ${new Date().toISOString()} -----\n`;
      consul = await startConsul({ ports: consul.ports });
      return consul;
    },
    /**
     * stop stops the nodes (SIGTERM, SIGKILL after 10s) and then Consul. It
     * resolves with a list of problems (a node that needed SIGKILL or exited
     * with a non-zero status, or had already exited); [] when all went well.
     */
    async stop() {
      const problems = [];
      const results = await Promise.all(started.map(async (x) => {
        const early = x.exited();
        return { x, early, status: await x.kill(10_000) };
      }));
      for (const { x, early, status } of results) {
        if (early) problems.push(`${x.nodeId} had exited during the test: ${JSON.stringify(early)}`);
        else if (status.killed) problems.push(`${x.nodeId} did not exit within 10s of SIGTERM (SIGKILLed)`);
        else if (status.code !== 0) problems.push(`${x.nodeId} exited with ${JSON.stringify(status)} after SIGTERM`);
      }
      await consul.stop();
      return problems;
    },
  };

  try {
    const taken = new Set();
    const httpPorts = await distinctPorts(n, freeTCPPort, taken);
    const udpPorts = await distinctPorts(n, freeUDPPort, taken);
    specs = httpPorts.map((httpPort, i) => ({ nodeId: `n${i + 1}`, httpPort, udpPort: udpPorts[i] }));
    const nodes = await Promise.allSettled(specs.map((s) => startConfab(nodeOptions(s))));
    for (const r of nodes) if (r.status === 'fulfilled') started.push(r.value);
    const failed = nodes.filter((r) => r.status === 'rejected');
    if (failed.length) throw failed[0].reason;

    // Every node must know every node before a test starts.
    const want = specs.map((s) => s.nodeId).sort();
    const deadline = Date.now() + readyTimeout;
    let last = '';
    for (;;) {
      const missing = [];
      for (const x of started) {
        const dead = x.exited();
        if (dead) throw new Error(`${x.nodeId} exited (${JSON.stringify(dead)}):\n${x.logs()}`);
        try {
          const st = await cluster.status(x.nodeId);
          const alive = (st.nodes || []).filter((nd) => nd.alive).map((nd) => nd.id).sort();
          if (JSON.stringify(alive) !== JSON.stringify(want)) {
            missing.push(`${x.nodeId} knows ${JSON.stringify(alive)}`);
          }
        } catch (err) {
          missing.push(`${x.nodeId}: ${err.message}`);
        }
      }
      if (missing.length === 0) break;
      last = missing.join('; ');
      if (Date.now() > deadline) {
        throw new Error(`cluster not formed within ${readyTimeout}ms: ${last}`);
      }
      await sleep(200);
    }
  } catch (err) {
    await cluster.stop().catch(() => {});
    const logs = Object.entries(cluster.logs()).map(([k, v]) => `----- ${k} -----\n${v}`).join('\n');
    err.message += `\n${logs}`;
    throw err;
  }
  return cluster;
}

const test = base.extend({
  // Extra flags for every node (worker option: test.use({ clusterNodeArgs })
  // in a spec file gives that file its own worker and cluster).
  clusterNodeArgs: [[], { scope: 'worker', option: true }],

  // One cluster per worker: started before the worker's first test that uses
  // it, stopped after its last one (and on any failure, since Playwright
  // replaces the worker after a failed test).
  cluster: [async ({ clusterNodeArgs }, use) => {
    const cluster = await startCluster({ nodes: 3, nodeArgs: clusterNodeArgs });
    let problems = [];
    try {
      await use(cluster);
    } finally {
      problems = await cluster.stop();
    }
    if (problems.length) {
      const logs = Object.entries(cluster.logs()).map(([k, v]) => `----- ${k} -----\n${v}`).join('\n');
      throw new Error(`cluster did not shut down cleanly:\n  ${problems.join('\n  ')}\n${logs}`);
    }
  }, { scope: 'worker', timeout: 120_000 }],

  // join(nodeId, room, name, { publish = true }) opens the room page on that
  // node in a NEW browser context and returns the page. With publish false
  // getUserMedia fails in that context, so the participant joins without
  // publishing (a viewer: it only subscribes). Contexts close after the
  // test. Console output of every page is attached to a failed test.
  join: async ({ browser, cluster }, use, testInfo) => {
    const contexts = [];
    const consoles = [];
    await use(async (nodeId, room, name, { publish = true } = {}) => {
      const context = await browser.newContext({ permissions: ['camera', 'microphone'] });
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
      const res = await page.goto(roomURL(cluster.node(nodeId), room, name));
      expect(res && res.status(), `GET room page for ${name} on ${nodeId}`).toBe(200);
      return page;
    });
    if (testInfo.status !== testInfo.expectedStatus) {
      for (const { name, log } of consoles) {
        await attachText(testInfo, `console-${name}.log`, log.join('\n'));
      }
    }
    for (const context of contexts) {
      await context.close().catch(() => {});
    }
  },

  // On failure: every process's log, every node's /api/cluster and the
  // Consul keys. It depends on join so that it runs (and snapshots the
  // cluster) before join closes the browser contexts.
  clusterArtifacts: [async ({ cluster, join }, use, testInfo) => {
    await use();
    if (testInfo.status === testInfo.expectedStatus) return;
    for (const x of cluster.nodes) {
      let body;
      try {
        body = JSON.stringify(await cluster.status(x.nodeId), null, 2);
      } catch (err) {
        body = `GET /api/cluster failed: ${err.message}`;
      }
      await attachText(testInfo, `api-cluster-${x.nodeId}.json`, body, 'application/json');
    }
    try {
      const keys = await cluster.consul.kv('confab/');
      await attachText(testInfo, 'consul-kv-keys.txt', keys.join('\n'));
    } catch (err) {
      await attachText(testInfo, 'consul-kv-keys.txt', err.message);
    }
    for (const [name, log] of Object.entries(cluster.logs())) {
      await attachText(testInfo, `${name}.log`, log);
    }
  }, { auto: true }],
});

module.exports = { test, expect, startConsul, startCluster, fetchJSON, clusterSecret };
