// Failure tests of a 3-node cluster (a real Consul dev agent, real bin/confab
// nodes n1..n3 started with --drain-timeout 20s, Chromium with fake devices):
//
//   1. node death   SIGKILL of a node while a room spans all three nodes;
//   2. Consul outage the agent is SIGKILLed, then restarted on the same ports
//                    with no data (a dev agent);
//   3. rolling restart each node in turn gets SIGTERM (drain), exits 0 and
//                    is restarted with the same id and ports.
//
// Every test prints what it measured (console.log and the test's
// annotations: these are the numbers in docs/reliability.md) and asserts the
// behaviour with generous deadlines, never a tight time. The tests share the
// worker's cluster and each one leaves it whole (3 nodes, Consul up); after a
// failure Playwright starts a new worker, hence a new cluster.
const crypto = require('node:crypto');
const { test, expect, fetchJSON } = require('../lib/cluster');
const { expectMediaFlowing, sleep } = require('../lib/confab');

const DRAIN_TIMEOUT_S = 20;
// Placement off: these tests put browsers on chosen nodes (placement.spec.js
// covers placement).
test.use({ clusterNodeArgs: ['--drain-timeout', `${DRAIN_TIMEOUT_S}s`, '--placement', 'off'] });

const NODES = ['n1', 'n2', 'n3'];
// Generous deadline of every recovery step.
const RECOVERY_MS = 60_000;

const uniqueRoom = (prefix) => `${prefix}-${crypto.randomBytes(4).toString('hex')}`;
const show = (x) => JSON.stringify(x);

/** report prints a measured time and records it as an annotation. */
function report(what, ms) {
  const text = `${what}: ${typeof ms === 'number' ? `${(ms / 1000).toFixed(2)} s` : ms}`;
  console.log(`[measure] ${test.info().title}: ${text}`);
  test.info().annotations.push({ type: 'measure', description: text });
}

/**
 * until polls fn (truthy result = done) every interval ms and resolves with
 * the result; throws with the last problem (fn may throw or return false)
 * after timeout ms.
 */
async function until(what, fn, { timeout = RECOVERY_MS, interval = 200 } = {}) {
  const deadline = Date.now() + timeout;
  let last = '';
  for (;;) {
    try {
      const r = await fn();
      if (r) return r;
    } catch (err) {
      last = err.message;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeout} ms${last ? ` (last: ${last})` : ''}`);
    await sleep(interval);
  }
}

/**
 * watchStates records the page's connection-state changes with wall-clock
 * times (same clock as the test's Date.now()) in window.__states.
 */
async function watchStates(page) {
  await page.evaluate(() => {
    const el = document.querySelector('[data-testid="connection-state"]');
    window.__states = [{ state: el.textContent.trim(), t: Date.now() }];
    new MutationObserver(() => {
      const state = el.textContent.trim();
      const last = window.__states[window.__states.length - 1];
      if (last.state !== state) window.__states.push({ state, t: Date.now() });
    }).observe(el, { childList: true, characterData: true, subtree: true, attributes: true });
  });
}

const statesOf = (page) => page.evaluate(() => window.__states || []);
const confabInfo = (page) => page.evaluate(() => ({
  state: window.confab.state, nodeId: window.confab.nodeId, participantId: window.confab.participantId,
}));

/**
 * waitFailover waits until page, which was on node `from`, has shown
 * `reconnecting` after t0 and then `connected` on another node; it returns
 * { reconnecting, connected } (ms after t0) and the new node.
 */
async function waitFailover(page, from, t0, label) {
  const info = await until(`${label} reconnected on another node than ${from}`, async () => {
    const i = await confabInfo(page);
    return i.state === 'connected' && i.nodeId && i.nodeId !== from ? i : null;
  });
  const states = (await statesOf(page)).filter((s) => s.t >= t0 - 50);
  const rec = states.find((s) => s.state === 'reconnecting');
  const conn = states.find((s) => s.state === 'connected' && (!rec || s.t >= rec.t));
  expect(rec, `${label} showed "reconnecting" after the failure (states ${show(states)})`).toBeTruthy();
  return { reconnecting: rec.t - t0, connected: (conn ? conn.t : Date.now()) - t0, node: info.nodeId, participantId: info.participantId };
}

const tiles = (page) => page.getByTestId('remote-tile');
const tileOf = (page, name) => page.locator(`[data-testid="remote-tile"][data-participant-name="${name}"]`);

/** expectSees asserts that page shows exactly one tile per name in names. */
async function expectSees(page, names, { timeout = RECOVERY_MS } = {}) {
  await expect(tiles(page)).toHaveCount(names.length, { timeout });
  for (const name of names) await expect(tileOf(page, name)).toHaveCount(1, { timeout });
}

/**
 * tileFlow tells whether the video and audio of the tile of `name` on page
 * are live: the inbound-rtp streams of the tracks attached to that tile
 * received bytes (and decoded video frames) over ~1.5 s. Returns the
 * participant id of the tile, or null.
 */
async function tileFlow(page, name) {
  return page.evaluate(async (name) => {
    const tile = document.querySelector(`[data-testid="remote-tile"][data-participant-name="${name}"]`);
    const pc = window.confab && window.confab.pcs && window.confab.pcs.subscriber;
    if (!tile || !pc) return null;
    const ids = [];
    for (const el of tile.querySelectorAll('video, audio')) {
      if (el.srcObject) for (const t of el.srcObject.getTracks()) ids.push(t.id);
    }
    const sample = async () => {
      const m = new Map();
      (await pc.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && ids.includes(s.trackIdentifier)) m.set(s.trackIdentifier, s);
      });
      return m;
    };
    const a = await sample();
    await new Promise((r) => setTimeout(r, 1500));
    const b = await sample();
    let video = false; let audio = false;
    for (const [id, s] of b) {
      const p = a.get(id);
      if (!p || !(s.bytesReceived > p.bytesReceived)) continue;
      if (s.kind === 'video' && s.framesDecoded > p.framesDecoded) video = true;
      if (s.kind === 'audio') audio = true;
    }
    return video && audio ? tile.dataset.participantId : null;
  }, name);
}

/** nodesAlive waits until every running node's /api/cluster lists `want` alive. */
async function waitMembership(cluster, want, what) {
  return until(what, async () => {
    const st = await cluster.statuses();
    const bad = Object.entries(st).filter(([, s]) => show((s.nodes || []).filter((n) => n.alive).map((n) => n.id).sort()) !== show(want));
    if (bad.length) throw new Error(bad.map(([id, s]) => `${id} knows ${show((s.nodes || []).map((n) => `${n.id}${n.alive ? '' : '(dead)'}`))}`).join('; '));
    return true;
  });
}

/**
 * producerProblems checks the room on every node's /api/cluster: every
 * producer listed (local or piped) belongs to a live participant (a local
 * participant of some node), appears once per node, and each node lists
 * exactly the live participants' producers when it hosts participants
 * (2 per publisher). Returns [] when all is well.
 */
function producerProblems(statuses, room, expectPublishers) {
  const problems = [];
  const roomOf = (st) => (st.rooms || []).find((r) => r.name === room);
  const live = new Map();
  for (const [id, st] of Object.entries(statuses)) {
    const r = roomOf(st);
    for (const p of (r && r.participants) || []) {
      if (p.remote === false) live.set(p.id, { name: p.name, node: id });
    }
  }
  if (live.size !== expectPublishers) problems.push(`${live.size} live participants, want ${expectPublishers}: ${show([...live.values()])}`);
  for (const [id, st] of Object.entries(statuses)) {
    const r = roomOf(st);
    if (!r) continue;
    const all = [...(r.localProducers || []), ...(r.pipedProducers || [])];
    const hosts = (r.participants || []).some((p) => p.remote === false);
    const seen = new Map();
    for (const p of all) seen.set(p.id, (seen.get(p.id) || 0) + 1);
    for (const [pid, n] of seen) if (n > 1) problems.push(`${id}: producer ${pid} listed ${n} times`);
    for (const p of all) {
      if (!live.has(p.participantId)) problems.push(`${id}: ghost producer ${p.id} (${p.participantName}/${p.kind} from ${p.origin}) of no live participant`);
    }
    if (hosts && all.length !== 2 * live.size) {
      problems.push(`${id}: ${all.length} producers (local+piped) for ${live.size} live participants: ${show(all.map((p) => `${p.origin}/${p.participantName}/${p.kind}`))}`);
    }
    const perParticipant = new Map();
    for (const p of all) perParticipant.set(`${p.participantId}/${p.kind}`, (perParticipant.get(`${p.participantId}/${p.kind}`) || 0) + 1);
    for (const [k, n] of perParticipant) if (n > 1) problems.push(`${id}: ${n} ${k} producers`);
  }
  return problems;
}

async function waitProducersClean(cluster, room, publishers, what, timeout = RECOVERY_MS) {
  let last = null;
  try {
    return await until(what, async () => {
      last = await cluster.statuses();
      const problems = producerProblems(last, room, publishers);
      if (problems.length) throw new Error(problems.join('; '));
      return true;
    }, { timeout, interval: 500 });
  } catch (err) {
    await test.info().attach(`api-cluster-at-failure-${room}.json`, { body: show(last), contentType: 'application/json' });
    throw err;
  }
}

/** joinAll opens Alice on n1, Bob on n2, Carol on n3 and waits for two-way media. */
async function joinThree(join, room) {
  const pages = {
    Alice: await join('n1', room, 'Alice'),
    Bob: await join('n2', room, 'Bob'),
    Carol: await join('n3', room, 'Carol'),
  };
  for (const [name, page] of Object.entries(pages)) {
    await expect(page.getByTestId('connection-state')).toHaveText('connected', { timeout: 45_000 });
    await watchStates(page);
    await expectSees(page, Object.keys(pages).filter((n) => n !== name));
  }
  for (const [name, page] of Object.entries(pages)) {
    await expectMediaFlowing(page, { remotes: 2, timeout: 45_000, label: `${name} before` });
  }
  return pages;
}

test.describe('failover', () => {
  test('node death: SIGKILL of a node; its participant rejoins elsewhere, no ghost producers', async ({ cluster, join }) => {
    test.setTimeout(240_000);
    const room = uniqueRoom('kill');
    const pages = await joinThree(join, room);
    const { Alice: alice, Bob: bob, Carol: carol } = pages;
    const oldCarol = (await confabInfo(carol)).participantId;
    expect(oldCarol).toBeTruthy();

    const t0 = Date.now();
    cluster.node('n3').signal('SIGKILL');
    const gone = (page) => page.locator(`[data-testid="remote-tile"][data-participant-id="${oldCarol}"]`);

    const [aGone, bGone, fo, media] = await Promise.all([
      (async () => { await expect(gone(alice)).toHaveCount(0, { timeout: RECOVERY_MS }); return Date.now() - t0; })(),
      (async () => { await expect(gone(bob)).toHaveCount(0, { timeout: RECOVERY_MS }); return Date.now() - t0; })(),
      waitFailover(carol, 'n3', t0, 'Carol'),
      (async () => {
        const times = {};
        await Promise.all([
          ...[['Alice', alice], ['Bob', bob]].map(async ([name, page]) => {
            await until(`${name} receives media from a new Carol`, async () => {
              const pid = await tileFlow(page, 'Carol');
              return pid && pid !== oldCarol;
            });
            times[name] = Date.now() - t0;
          }),
          (async () => {
            await until('Carol on a new node', async () => (await confabInfo(carol)).nodeId !== 'n3' && (await confabInfo(carol)).state === 'connected');
            await expectMediaFlowing(carol, { remotes: 2, timeout: RECOVERY_MS, label: 'Carol after failover' });
            times.Carol = Date.now() - t0;
          })(),
        ]);
        return times;
      })(),
    ]);
    report('old Carol tile gone on Alice (n1)', aGone);
    report('old Carol tile gone on Bob (n2)', bGone);
    report(`Carol shows reconnecting`, fo.reconnecting);
    report(`Carol connected again (on ${fo.node})`, fo.connected);
    report('Alice receives new Carol', media.Alice);
    report('Bob receives new Carol', media.Bob);
    report('Carol receives Alice and Bob (incl. 2 s getStats window)', media.Carol);
    report('two-way media back (all)', Math.max(media.Alice, media.Bob, media.Carol));
    expect(fo.node).not.toBe('n3');
    expect(fo.participantId).not.toBe(oldCarol);
    await expectSees(alice, ['Bob', 'Carol']);
    await expectSees(bob, ['Alice', 'Carol']);
    await expectSees(carol, ['Alice', 'Bob']);

    // The dead node's records go; then it restarts with the same id and ports.
    const status = await cluster.node('n3').wait();
    expect(status.signal).toBe('SIGKILL');
    const tr = Date.now();
    await cluster.restartNode('n3');
    await waitMembership(cluster, NODES, 'every node lists n1, n2, n3 alive after n3 restarted');
    report('n3 restarted and listed by all nodes', Date.now() - tr);
    await waitProducersClean(cluster, room, 3, 'no duplicate or ghost producers after n3 restarted');
    report('producers clean on every node after n3 restart', Date.now() - tr);
    const st = await cluster.status('n3');
    const r3 = (st.rooms || []).find((r) => r.name === room);
    expect(r3 ? (r3.participants || []).filter((p) => p.remote === false) : [], 'restarted n3 has no local participant in the room').toEqual([]);
    await until('Consul has exactly the 6 producers of the room, none of n3', async () => {
      const keys = await cluster.consul.kv(`confab/rooms/${room}/producers/`);
      if (keys.length !== 6 || keys.some((k) => k.includes('/producers/n3/'))) throw new Error(show(keys));
      return true;
    });
    for (const [name, page] of Object.entries(pages)) {
      await expectMediaFlowing(page, { remotes: 2, timeout: 45_000, label: `${name} after n3 restart` });
    }

    // Leaving after a failover is final: no reconnect, the tile goes away.
    const newCarol = fo.participantId;
    await carol.getByTestId('leave').click();
    await expect(carol.getByTestId('connection-state')).toHaveText('disconnected');
    for (const page of [alice, bob]) {
      await expect(page.locator(`[data-testid="remote-tile"][data-participant-id="${newCarol}"]`)).toHaveCount(0, { timeout: 30_000 });
    }
    await sleep(3_000);
    await expect(carol.getByTestId('connection-state')).toHaveText('disconnected');
    await expect(tileOf(alice, 'Carol')).toHaveCount(0);
    await expect(tileOf(bob, 'Carol')).toHaveCount(0);
  });

  test('Consul outage: rooms keep working, degraded readiness, recovery after a data-less restart', async ({ cluster, join }) => {
    test.setTimeout(240_000);
    const room = uniqueRoom('consul');
    const pages = await joinThree(join, room);

    const t0 = Date.now();
    cluster.consul.signal('SIGKILL');
    await cluster.consul.wait();
    const degraded = await until('every node reports /readyz degraded', async () => {
      for (const x of cluster.nodes) {
        const res = await fetch(`${x.url}/readyz`, { signal: AbortSignal.timeout(3_000) });
        const body = await res.json();
        if (res.status !== 200 || body.status !== 'degraded') throw new Error(`${x.nodeId}: ${res.status} ${show(body)}`);
      }
      return true;
    });
    expect(degraded).toBe(true);
    report('every node /readyz 200 degraded after Consul killed', Date.now() - t0);
    for (const [name, page] of Object.entries(pages)) {
      await expectMediaFlowing(page, { remotes: 2, timeout: 30_000, label: `${name} during the outage` });
      expect((await confabInfo(page)).state).toBe('connected');
    }
    report('media flowing on all pages during the outage (checked at)', Date.now() - t0);

    // A local join during the outage.
    const tj = Date.now();
    const dave = await join('n1', room, 'Dave');
    await expect(dave.getByTestId('connection-state')).toHaveText('connected', { timeout: 45_000 });
    await until('Dave receives Alice (local on n1)', async () => tileFlow(dave, 'Alice'));
    await until('Alice receives Dave', async () => tileFlow(pages.Alice, 'Dave'));
    report('Dave joins n1 during the outage, two-way media with Alice', Date.now() - tj);
    const daveSees = await tiles(dave).evaluateAll((els) => els.map((e) => e.dataset.participantName));
    report('Dave (joined during outage) sees', show(daveSees.sort()));

    // Consul comes back without data.
    const tr = Date.now();
    await cluster.restartConsul();
    report('Consul agent restarted (leader elected)', Date.now() - tr);
    // (Nodes keep their peers while Consul is away, so /api/cluster lists
    // them all along; what matters is that they are back in Consul.)
    await waitMembership(cluster, NODES, 'every node lists n1, n2, n3 alive after Consul restart');
    await until('every node re-registered in Consul', async () => {
      const keys = await cluster.consul.kv('confab/nodes/');
      if (show(keys.sort()) !== show(NODES.map((n) => `confab/nodes/${n}`))) throw new Error(show(keys));
      return true;
    });
    report('every node re-registered in Consul (confab/nodes/*)', Date.now() - tr);
    await until('every node /readyz ready', async () => {
      for (const x of cluster.nodes) {
        const body = await fetchJSON(`${x.url}/readyz`);
        if (body.status !== 'ready') throw new Error(`${x.nodeId}: ${show(body)}`);
      }
      return true;
    });
    report('every node /readyz ready after Consul restart', Date.now() - tr);
    await waitProducersClean(cluster, room, 4, 'room producers re-registered everywhere, no duplicates');
    await until('Consul KV has the 8 producers of the room', async () => {
      const keys = await cluster.consul.kv(`confab/rooms/${room}/producers/`);
      if (keys.length !== 8) throw new Error(`${keys.length} keys: ${show(keys)}`);
      return true;
    });
    report('room producers back in Consul and on all nodes', Date.now() - tr);
    // Dave's producers appeared during the outage: the other nodes learn of
    // them only through Consul, so they are piped to n2 and n3 only now.
    await Promise.all([['Bob', pages.Bob], ['Carol', pages.Carol]].map(async ([name, page]) => {
      await until(`${name} receives Dave (published during the outage)`, async () => tileFlow(page, 'Dave'));
      report(`${name} receives Dave after Consul restart`, Date.now() - tr);
    }));
    await Promise.all([...Object.entries(pages), ['Dave', dave]].map(([name, page]) => expectMediaFlowing(page, {
      remotes: 3, timeout: RECOVERY_MS, label: `${name} after Consul recovery`,
    })));
    report('media flowing on all 4 pages after Consul recovery', Date.now() - tr);

    // A participant on n2 after recovery sees everyone (re-registration and re-piping).
    const te = Date.now();
    const erin = await join('n2', room, 'Erin');
    await expect(erin.getByTestId('connection-state')).toHaveText('connected', { timeout: 45_000 });
    await expectSees(erin, ['Alice', 'Bob', 'Carol', 'Dave']);
    for (const name of ['Alice', 'Carol', 'Dave']) {
      await until(`Erin (n2) receives ${name}`, async () => tileFlow(erin, name));
    }
    await expectMediaFlowing(erin, { remotes: 4, timeout: RECOVERY_MS, label: 'Erin after recovery' });
    report('Erin joins n2 after recovery, receives all 4', Date.now() - te);
  });

  test('rolling restart: SIGTERM each node in turn, browsers move, media resumes', async ({ cluster, join }) => {
    test.setTimeout(300_000);
    const room = uniqueRoom('roll');
    const pages = await joinThree(join, room);

    for (const id of NODES) {
      const here = [];
      for (const [name, page] of Object.entries(pages)) if ((await confabInfo(page)).nodeId === id) here.push([name, page]);
      const t0 = Date.now();
      cluster.node(id).signal('SIGTERM');
      const [moves, exit] = await Promise.all([
        Promise.all(here.map(async ([name, page]) => [name, await waitFailover(page, id, t0, name)])),
        (async () => {
          const st = await Promise.race([cluster.node(id).wait(), sleep((DRAIN_TIMEOUT_S + 15) * 1000).then(() => null)]);
          return { st, ms: Date.now() - t0 };
        })(),
      ]);
      for (const [name, m] of moves) {
        report(`${id} drain: ${name} reconnecting`, m.reconnecting);
        report(`${id} drain: ${name} connected on ${m.node}`, m.connected);
      }
      expect(exit.st, `${id} exited within ${DRAIN_TIMEOUT_S + 15} s of SIGTERM`).toBeTruthy();
      expect(exit.st.code, `${id} exit status`).toBe(0);
      report(`${id} exited 0 after SIGTERM`, exit.ms);

      const tm = Date.now();
      for (const [name, page] of Object.entries(pages)) {
        await expectSees(page, Object.keys(pages).filter((n) => n !== name));
      }
      await Promise.all(Object.entries(pages).map(([name, page]) => expectMediaFlowing(page, { remotes: 2, timeout: RECOVERY_MS, label: `${name} after ${id} drained` })));
      report(`${id} drain: media flowing on every page (after SIGTERM)`, Date.now() - t0);

      const tr = Date.now();
      await cluster.restartNode(id);
      await waitMembership(cluster, NODES, `every node lists ${id} again`);
      report(`${id} restarted and listed by all`, Date.now() - tr);
      await Promise.all(Object.entries(pages).map(([name, page]) => expectMediaFlowing(page, { remotes: 2, timeout: RECOVERY_MS, label: `${name} after ${id} restarted` })));
      report(`${id} step: media flowing on every page after restart`, Date.now() - tm);
    }
    await waitProducersClean(cluster, room, 3, 'no duplicate or ghost producers after the rolling restart');
    const where = {};
    for (const [name, page] of Object.entries(pages)) where[name] = (await confabInfo(page)).nodeId;
    report('placement after the rolling restart', show(where));
  });
});
