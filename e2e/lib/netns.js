// Shaped networks for the browser tests: a network namespace joined to the
// host by a veth pair whose rate can be limited with tc (tbf) at any time,
// and a Chromium that runs inside it. Needs root (ip netns, tc); the kernel
// needs veth and sch_tbf, not netem.
//
//   createNetns(opts)     a namespace confab-<pid>-<n> with lo up and a veth
//                         pair on a free /30 of 10.213.0.0/16:
//                         { name, hostIf, nsIf, hostAddr, nsAddr, cidr, rate,
//                           setRate(kbit, opts), clearRate(opts), qdiscStats(),
//                           describe(), run(args), destroy() }
//                         hostAddr is the host end (the server binds there),
//                         nsAddr the namespace end (the browser's address).
//   launchInNetns(ns, o)  chromium.launch() inside the namespace through a
//                         generated wrapper (ip netns exec); Playwright talks
//                         to it over a pipe, which crosses namespaces.
//   forwardTCP(o)         a loopback TCP forwarder (a page served through
//                         127.0.0.1 is a secure context, so getUserMedia works).
//
// Downstream (towards the browser in the namespace) is shaped on the egress
// of the host end, upstream on the egress of the namespace end.
//
// Cleanup, in layers like procs.js: destroy() (the fixtures call it after
// every test) kills what still runs in the namespace, deletes the host end of
// the veth (which deletes both ends), the namespace and the temporary
// directories of its browser wrappers (<tmp>/<name>-*); the same runs
// synchronously when the worker exits or is signalled; each namespace is
// recorded as a file netns-<name> in $E2E_PID_DIR, which the global teardown
// cleans up (cleanupRecord) when a worker died without doing it; and
// createNetns first removes namespaces confab-<pid>-<n> whose pid is dead.
const { execFile, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const PREFIX = 'confab-';
const NAME_RE = /^confab-(\d+)-(\d+)$/;
const HOST_IF_RE = /^cf(\d+)-(\d+)h$/;
// The /30s are carved out of 10.213.0.0/16 (16384 of them).
const NET_A = 10;
const NET_B = 213;
const SUBNETS = 16384;
const NS_IF = 'veth0';

/** findTool returns the absolute path of a system tool (ip, tc). */
function findTool(name) {
  const dirs = (process.env.PATH || '').split(':').concat(['/usr/sbin', '/sbin', '/usr/bin', '/bin']);
  for (const d of dirs) {
    if (!d) continue;
    const p = path.join(d, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // next
    }
  }
  throw new Error(`netns: '${name}' not found (install iproute2)`);
}

let tools = null;
function tool(name) {
  if (!tools) tools = { ip: findTool('ip'), tc: findTool('tc') };
  return tools[name];
}

/** run runs a tool and resolves with its stdout; errors carry stderr. */
function run(name, args) {
  return new Promise((resolve, reject) => {
    execFile(tool(name), args, { timeout: 10_000 }, (err, stdout, stderr) => {
      if (err) {
        err.message = `${name} ${args.join(' ')}: ${String(stderr).trim() || err.message}`;
        reject(err);
        return;
      }
      resolve(String(stdout));
    });
  });
}

/** runSync is run for exit handlers; it never throws. */
function runSync(name, args) {
  try {
    return String(execFileSync(tool(name), args, { timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] }));
  } catch {
    return '';
  }
}

function pidAlive(pid) {
  return fs.existsSync(`/proc/${pid}`);
}

/** recordDir is $E2E_PID_DIR (created on demand), or null. */
function recordDir() {
  const dir = process.env.E2E_PID_DIR;
  if (!dir) return null;
  try {
    fs.mkdirSync(dir, { recursive: true });
    return dir;
  } catch {
    return null;
  }
}

/**
 * cleanupSync removes a namespace and its veth pair: it kills every process
 * still in the namespace (SIGKILL), deletes the host end of the veth (the
 * namespace end goes with it) and the namespace. Missing parts are fine.
 */
function cleanupSync({ name, hostIf }) {
  if (!NAME_RE.test(name)) return; // never touch anything we did not create
  for (const pid of runSync('ip', ['netns', 'pids', name]).split(/\s+/).filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // gone
    }
  }
  if (hostIf && HOST_IF_RE.test(hostIf)) runSync('ip', ['link', 'del', hostIf]);
  runSync('ip', ['netns', 'del', name]);
  // The browser wrappers of launchInNetns.
  try {
    for (const entry of fs.readdirSync(os.tmpdir())) {
      if (entry.startsWith(`${name}-`)) fs.rmSync(path.join(os.tmpdir(), entry), { recursive: true, force: true });
    }
  } catch {
    // ignore
  }
}

/**
 * cleanupRecord is the global teardown's part: rec is a parsed netns-*
 * record file ({ kind: 'netns', name, hostIf }). Returns true when it was
 * one (and has been cleaned up).
 */
function cleanupRecord(rec) {
  if (!rec || rec.kind !== 'netns' || typeof rec.name !== 'string') return false;
  const existed = listNetns().includes(rec.name);
  cleanupSync(rec);
  if (existed) console.error(`e2e: removed leftover network namespace ${rec.name}`);
  return true;
}

/** listNetns lists the names of the network namespaces (ip netns list). */
function listNetns() {
  return runSync('ip', ['netns', 'list']).split('\n').map((l) => l.split(' ')[0]).filter(Boolean);
}

let swept = false;
/**
 * sweepStale removes namespaces (and host veth ends) named after a process
 * that no longer exists: leftovers of runs whose cleanup never ran.
 */
function sweepStale() {
  if (swept) return;
  swept = true;
  for (const name of listNetns()) {
    const m = NAME_RE.exec(name);
    if (m && !pidAlive(Number(m[1]))) {
      cleanupSync({ name, hostIf: `cf${m[1]}-${m[2]}h` });
    }
  }
  for (const line of runSync('ip', ['-o', 'link', 'show']).split('\n')) {
    const ifname = (line.split(': ')[1] || '').split('@')[0];
    const m = HOST_IF_RE.exec(ifname);
    if (m && !pidAlive(Number(m[1]))) runSync('ip', ['link', 'del', ifname]);
  }
}

/** subnetAddrs are the four addresses of /30 number i of 10.213.0.0/16. */
function subnetAddrs(i) {
  const base = i * 4;
  return [0, 1, 2, 3].map((k) => `${NET_A}.${NET_B}.${(base + k) >> 8}.${(base + k) & 255}`);
}

/**
 * pickSubnet picks a /30 none of whose addresses the host uses (as an
 * address or a route), starting at a spot derived from the pid and n, so
 * that concurrent runs and several namespaces of one run differ.
 */
async function pickSubnet(n) {
  const used = new Set();
  for (const line of (await run('ip', ['-4', '-o', 'addr', 'show'])).split('\n')) {
    const m = /inet (\d+\.\d+\.\d+\.\d+)/.exec(line);
    if (m) used.add(m[1]);
  }
  for (const line of (await run('ip', ['-4', 'route', 'show', 'table', 'all'])).split('\n')) {
    const m = /^(?:\S+ )?(\d+\.\d+\.\d+\.\d+)(?:\/\d+)?/.exec(line);
    if (m) used.add(m[1]);
  }
  const start = (process.pid * 64 + n) % SUBNETS;
  for (let k = 0; k < SUBNETS; k++) {
    const i = (start + k) % SUBNETS;
    const addrs = subnetAddrs(i);
    if (addrs.every((a) => !used.has(a))) return { network: addrs[0], hostAddr: addrs[1], nsAddr: addrs[2] };
  }
  throw new Error(`netns: no free /30 left in ${NET_A}.${NET_B}.0.0/16`);
}

/** live maps name -> namespace object for namespaces not yet destroyed. */
const live = new Map();
let seq = 0;

function cleanupAllSync() {
  for (const ns of [...live.values()]) ns.destroySync();
  live.clear();
  // Like procs.js: leave no empty record directory behind (fails harmlessly
  // while other files are in it).
  if (process.env.E2E_PID_DIR) {
    try {
      fs.rmdirSync(process.env.E2E_PID_DIR);
    } catch {
      // not empty, or gone
    }
  }
}
let handlersInstalled = false;
/**
 * installHandlers cleans up on exit and on SIGINT/SIGTERM/SIGHUP, like
 * procs.js; only once a namespace was made (the global teardown, which
 * loads this file in the runner, must not change its signal handling).
 */
function installHandlers() {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', cleanupAllSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    const onSignal = () => {
      cleanupAllSync();
      process.removeListener(sig, onSignal);
      // Keep the default behaviour (die) unless someone else handles it.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

/**
 * tbfArgs are the tc arguments of a token bucket of kbit kbit/s. The bucket
 * holds burstBytes (default: 20 ms at the rate, at least two full-size
 * frames); packets wait at most latencyMs in its queue, later ones drop.
 */
function tbfArgs(kbit, { burstBytes, latencyMs = 100 } = {}) {
  if (!(kbit > 0)) throw new Error(`netns: rate must be > 0 kbit/s, got ${kbit}`);
  const burst = burstBytes || Math.max(3028, Math.ceil((kbit * 1000 / 8) * 0.02));
  return ['tbf', 'rate', `${Math.round(kbit)}kbit`, 'burst', String(burst), 'latency', `${latencyMs}ms`];
}

/**
 * createNetns creates a namespace with a veth pair to the host on a free
 * /30 (see the top of this file). With rateKbit the downstream is limited
 * at once. Rejects (after cleaning up) when something fails, e.g. not root.
 */
async function createNetns({ rateKbit } = {}) {
  installHandlers();
  sweepStale();
  const n = ++seq;
  const name = `${PREFIX}${process.pid}-${n}`;
  const hostIf = `cf${process.pid}-${n}h`; // at most 15 characters
  if (hostIf.length > 15) throw new Error(`netns: interface name ${hostIf} too long`);
  const { hostAddr, nsAddr, network } = await pickSubnet(n);

  const dir = recordDir();
  const recordFile = dir ? path.join(dir, `netns-${name}`) : null;
  const browsers = new Set();
  const shaped = { down: null, up: null };
  let destroyed = false;

  const ns = {
    name,
    hostIf,
    nsIf: NS_IF,
    hostAddr,
    nsAddr,
    cidr: `${network}/30`,
    /** rate is the current limit per direction in kbit/s (null: none). */
    get rate() { return { ...shaped }; },

    /** run runs `ip netns exec <name> <args...>` and resolves with stdout. */
    run: (args) => run('ip', ['netns', 'exec', name, ...args]),

    /**
     * setRate limits the link to kbit kbit/s (tbf; tc qdisc replace, so it
     * can change at any time). direction: 'down' (default: towards the
     * namespace), 'up' or 'both'. Options: burstBytes, latencyMs.
     */
    async setRate(kbit, { direction = 'down', ...opts } = {}) {
      const tbf = tbfArgs(kbit, opts);
      if (direction === 'down' || direction === 'both') {
        await run('tc', ['qdisc', 'replace', 'dev', hostIf, 'root', ...tbf]);
        shaped.down = kbit;
      }
      if (direction === 'up' || direction === 'both') {
        await run('tc', ['-n', name, 'qdisc', 'replace', 'dev', NS_IF, 'root', ...tbf]);
        shaped.up = kbit;
      }
      if (!['down', 'up', 'both'].includes(direction)) throw new Error(`netns: bad direction ${direction}`);
    },

    /** clearRate removes the limit ('both' directions by default). */
    async clearRate({ direction = 'both' } = {}) {
      if ((direction === 'down' || direction === 'both') && shaped.down !== null) {
        await run('tc', ['qdisc', 'del', 'dev', hostIf, 'root']);
        shaped.down = null;
      }
      if ((direction === 'up' || direction === 'both') && shaped.up !== null) {
        await run('tc', ['-n', name, 'qdisc', 'del', 'dev', NS_IF, 'root']);
        shaped.up = null;
      }
    },

    /**
     * qdiscStats returns the root qdisc counters of both ends:
     * { down: {kind, bytes, packets, drops, overlimits, backlog}, up: {...} }
     * (tc -s -j; counters restart whenever setRate installs a new qdisc kind).
     */
    async qdiscStats() {
      const pick = (out) => {
        const q = JSON.parse(out).find((x) => x.root) || {};
        return { kind: q.kind, bytes: q.bytes, packets: q.packets, drops: q.drops, overlimits: q.overlimits, backlog: q.backlog };
      };
      return {
        down: pick(await run('tc', ['-s', '-j', 'qdisc', 'show', 'dev', hostIf])),
        up: pick(await run('tc', ['-n', name, '-s', '-j', 'qdisc', 'show', 'dev', NS_IF])),
      };
    },

    /** describe is a text dump (addresses, routes, qdiscs) for failed tests. */
    async describe() {
      const parts = [];
      for (const [label, tl, args] of [
        ['host end', 'ip', ['addr', 'show', 'dev', hostIf]],
        ['host qdisc', 'tc', ['-s', 'qdisc', 'show', 'dev', hostIf]],
        ['namespace addresses', 'ip', ['-n', name, 'addr', 'show']],
        ['namespace routes', 'ip', ['-n', name, 'route', 'show']],
        ['namespace qdisc', 'tc', ['-n', name, '-s', 'qdisc', 'show', 'dev', NS_IF]],
        ['namespace processes', 'ip', ['netns', 'pids', name]],
      ]) {
        let out;
        try {
          out = await run(tl, args);
        } catch (err) {
          out = err.message;
        }
        parts.push(`----- ${label} -----\n${out}`);
      }
      return parts.join('\n');
    },

    /** trackBrowser makes destroy() close browser first (launchInNetns). */
    trackBrowser(browser) {
      browsers.add(browser);
      browser.on('disconnected', () => browsers.delete(browser));
    },

    /**
     * destroy closes the browsers launched in the namespace, kills whatever
     * still runs in it and removes the veth pair and the namespace.
     */
    async destroy() {
      if (destroyed) return;
      await Promise.all([...browsers].map((b) => b.close().catch(() => {})));
      ns.destroySync();
    },

    destroySync() {
      if (destroyed) return;
      destroyed = true;
      cleanupSync({ name, hostIf });
      live.delete(name);
      if (recordFile) fs.rmSync(recordFile, { force: true });
    },
  };

  // Record first, so that the global teardown finds even a half-made one.
  if (recordFile) fs.writeFileSync(recordFile, JSON.stringify({ kind: 'netns', name, hostIf }));
  live.set(name, ns);
  try {
    await run('ip', ['netns', 'add', name]);
    await run('ip', ['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', NS_IF, 'netns', name]);
    await run('ip', ['addr', 'add', `${hostAddr}/30`, 'dev', hostIf]);
    await run('ip', ['link', 'set', hostIf, 'up']);
    await run('ip', ['-n', name, 'addr', 'add', `${nsAddr}/30`, 'dev', NS_IF]);
    await run('ip', ['-n', name, 'link', 'set', NS_IF, 'up']);
    await run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    if (rateKbit) await ns.setRate(rateKbit);
  } catch (err) {
    ns.destroySync();
    err.message = `netns: creating ${name} failed (root needed): ${err.message}`;
    throw err;
  }
  return ns;
}

/**
 * launchInNetns launches Chromium inside ns and returns the Browser.
 * launchOptions are Playwright's (the `launchOptions` fixture, i.e. the
 * config's use.launchOptions): its executablePath and args are kept, the
 * executable is wrapped in `ip netns exec`. secureOrigins (e.g. the page's
 * http://<hostAddr>:<port>) are treated as secure contexts, so getUserMedia
 * works there; args are appended. destroy() of ns closes the browser.
 */
async function launchInNetns(ns, { launchOptions = {}, secureOrigins = [], args = [] } = {}) {
  const { chromium } = require('@playwright/test');
  const exe = launchOptions.executablePath || process.env.CHROMIUM || '/usr/bin/chromium';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${ns.name}-`));
  const wrapper = path.join(dir, 'chromium');
  const q = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;
  // ip netns exec execs the command in place, so Playwright's pid is
  // Chromium's.
  fs.writeFileSync(wrapper, `#!/bin/sh\nexec ${q(tool('ip'))} netns exec ${q(ns.name)} ${q(exe)} "$@"\n`, { mode: 0o755 });
  const allArgs = [...(launchOptions.args || []), ...args];
  if (secureOrigins.length) allArgs.push(`--unsafely-treat-insecure-origin-as-secure=${secureOrigins.join(',')}`);
  let browser;
  try {
    browser = await chromium.launch({ ...launchOptions, executablePath: wrapper, args: allArgs });
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  browser.on('disconnected', () => fs.rmSync(dir, { recursive: true, force: true }));
  ns.trackBrowser(browser);
  return browser;
}

/**
 * forwardTCP listens on listenHost:listenPort and pipes every connection to
 * host:port. Resolves with { close() } once listening; close() stops
 * listening and cuts the open connections.
 */
function forwardTCP({ listenHost = '127.0.0.1', listenPort, host, port }) {
  const sockets = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect({ host, port });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => { client.destroy(); upstream.destroy(); });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(listenPort, listenHost, () => {
      server.removeListener('error', reject);
      resolve({
        close: () => new Promise((done) => {
          server.close(() => done());
          for (const s of sockets) s.destroy();
        }),
      });
    });
  });
}

module.exports = { createNetns, launchInNetns, forwardTCP, cleanupRecord, listNetns, PREFIX };
