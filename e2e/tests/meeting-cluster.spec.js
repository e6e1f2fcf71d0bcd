// Meeting features across a 3-node cluster (a real Consul dev agent, real
// bin/confab nodes n1..n3 with placement off, so that a room spans the
// nodes the pages are opened on): presence in the participant list, mute
// and camera-off indicators, screen share, chat ordering and history, and
// a node's death keeping the mute state and the chat. One browser context
// per participant; pages that only watch join with camera=off&mic=off (a
// 2-core box runs these tests). Times are printed ([measure] lines and
// annotations); the assertions use generous bounds.
const crypto = require('node:crypto');
const { test: clusterTest, expect } = require('../lib/cluster');
const { roomURL } = require('../lib/confab');
const {
  sleep, show, sel, tileOf, itemOf, screenTileOf, report, expectConnected, withPages, watch, waitWatch, firstState,
  statesOf, expectVideoDecoding, allVideoFrames, waitNewFrames, chatMessages, openChat, sendChat, waitChat,
} = require('../lib/meeting');

const test = withPages(clusterTest);

// Placement off: every page stays on the node it was opened on (the same
// flags as cluster.spec.js, so the two files may share a worker's cluster).
test.use({ clusterNodeArgs: ['--placement', 'off'] });

const NODES = ['n1', 'n2', 'n3'];
const OFF = '&camera=off&mic=off';
const CONNECT_MS = 45_000;

const uniqueRoom = (prefix) => `${prefix}-${crypto.randomBytes(4).toString('hex')}`;

/** openOn opens the room page of room as name on node id (query appended). */
async function openOn(pages, cluster, id, room, name, query = '') {
  const page = await pages.open(roomURL(cluster.node(id), room, name) + query, name);
  return page;
}

/** connectedOn waits until page is connected and checks it is on node id. */
async function connectedOn(page, id) {
  await expectConnected(page, CONNECT_MS);
  await expect(page.getByTestId('node-id')).toHaveText(id);
  expect(await page.evaluate(() => window.confab.nodeId)).toBe(id);
}

/** waitMembership waits until every running node lists all of NODES alive. */
async function waitMembership(cluster, timeout = 60_000) {
  await expect(async () => {
    const st = await cluster.statuses();
    for (const [id, s] of Object.entries(st)) {
      const alive = (s.nodes || []).filter((n) => n.alive).map((n) => n.id).sort();
      expect(alive, `nodes alive on ${id}`).toEqual(NODES);
    }
  }).toPass({ timeout, intervals: [250, 500, 1_000] });
}

test.describe('meeting features across three nodes', () => {
  test('presence: a participant on another node appears in the list and the grid, and goes when it leaves', async ({
    cluster, pages,
  }, testInfo) => {
    const room = uniqueRoom('presence');
    const alice = await openOn(pages, cluster, 'n1', room, 'Alice');
    await connectedOn(alice, 'n1');
    await expect(alice.getByTestId('participant-count')).toHaveText('1');

    const wTile = await watch(alice, sel.tile('Bob'));
    const wItem = await watch(alice, sel.item('Bob'));
    const wCount = await watch(alice, '[data-testid="participant-count"]', { text: '2' });
    const t0 = Date.now();
    const bob = await openOn(pages, cluster, 'n2', room, 'Bob', OFF);
    await connectedOn(bob, 'n2');
    const bobConnected = await firstState(bob, 'connected', t0);
    expect(bobConnected, "Bob's connected state was recorded").not.toBeNull();
    const tileMs = (await waitWatch(wTile, t0)) - (bobConnected - t0);
    const itemMs = (await waitWatch(wItem, t0)) - (bobConnected - t0);
    const countMs = (await waitWatch(wCount, t0)) - (bobConnected - t0);
    report(testInfo, 'Bob (n2) page opened -> connected', bobConnected - t0);
    report(testInfo, "Bob connected -> his tile on Alice's page (n1)", tileMs);
    report(testInfo, "Bob connected -> his participant-item on Alice's page", itemMs);
    report(testInfo, "Bob connected -> participant-count 2 on Alice's page", countMs);
    for (const [what, ms] of [['tile', tileMs], ['participant-item', itemMs], ['participant-count', countMs]]) {
      expect(ms, `ms from Bob's connected to his ${what} on Alice's page`).toBeLessThanOrEqual(5_000);
    }

    // Bob joined with nothing on: Alice's page says so; both lists agree.
    const bobOnAlice = tileOf(alice, 'Bob');
    await expect(bobOnAlice).toHaveCount(1);
    await expect(bobOnAlice).toHaveAttribute('data-audio-muted', 'true');
    await expect(bobOnAlice).toHaveAttribute('data-video-muted', 'true');
    await expect(bobOnAlice.locator('.avatar')).toBeVisible();
    await expect(itemOf(alice, 'Bob')).not.toHaveAttribute('data-self', 'true');
    await expect(itemOf(alice, 'Alice')).toHaveAttribute('data-self', 'true');
    await expect(bob.getByTestId('participant-count')).toHaveText('2');
    await expect(itemOf(bob, 'Bob')).toHaveAttribute('data-self', 'true');
    await expect(itemOf(bob, 'Alice')).not.toHaveAttribute('data-self', 'true');
    await expect(tileOf(bob, 'Alice')).toHaveCount(1);
    const bobId = await bob.evaluate(() => window.confab.participantId);
    await expect(bobOnAlice).toHaveAttribute('data-participant-id', bobId);
    await expect(itemOf(alice, 'Bob')).toHaveAttribute('data-participant-id', bobId);

    const wTileGone = await watch(alice, sel.tile('Bob'), { absent: true });
    const wItemGone = await watch(alice, sel.item('Bob'), { absent: true });
    const wCount1 = await watch(alice, '[data-testid="participant-count"]', { text: '1' });
    const t1 = Date.now();
    await bob.getByTestId('leave').click();
    const goneMs = await waitWatch(wTileGone, t1);
    const itemGoneMs = await waitWatch(wItemGone, t1);
    const count1Ms = await waitWatch(wCount1, t1);
    report(testInfo, "Bob leaves -> his tile gone on Alice's page", goneMs);
    report(testInfo, "Bob leaves -> his participant-item gone on Alice's page", itemGoneMs);
    report(testInfo, "Bob leaves -> participant-count 1 on Alice's page", count1Ms);
    for (const [what, ms] of [['tile', goneMs], ['participant-item', itemGoneMs], ['participant-count 1', count1Ms]]) {
      expect(ms, `ms from Bob's leave to ${what} on Alice's page`).toBeLessThanOrEqual(5_000);
    }
    await expect(alice.getByTestId('participant-item')).toHaveCount(1);
    await expect(alice.getByTestId('remote-tile')).toHaveCount(0);
  });

  test('mute and camera off on node 1 show on node 3; the video comes back', async ({ cluster, pages }, testInfo) => {
    const room = uniqueRoom('xmute');
    const alice = await openOn(pages, cluster, 'n1', room, 'Alice');
    const carol = await openOn(pages, cluster, 'n3', room, 'Carol', OFF);
    await connectedOn(alice, 'n1');
    await connectedOn(carol, 'n3');
    const aliceOnCarol = tileOf(carol, 'Alice');
    await expect(aliceOnCarol).toHaveCount(1, { timeout: 20_000 });
    await expect(aliceOnCarol).toHaveAttribute('data-audio-muted', 'false');
    await expect(aliceOnCarol).toHaveAttribute('data-video-muted', 'false');
    await expectVideoDecoding(carol, sel.tileVideo('Alice'), { timeout: 30_000, label: "Alice's camera on Carol's page (n3)" });

    const audioBtn = alice.getByTestId('toggle-audio');
    const videoBtn = alice.getByTestId('toggle-video');

    let w = await watch(carol, `${sel.tile('Alice')}[data-audio-muted="true"]`);
    let wItem = await watch(carol, `${sel.item('Alice')}[data-audio-muted="true"]`);
    let t0 = Date.now();
    await audioBtn.click();
    await expect(audioBtn).toHaveAttribute('aria-pressed', 'true', { timeout: 5_000 });
    let ms = await waitWatch(w, t0);
    report(testInfo, 'mute on n1 -> data-audio-muted on n3', ms);
    report(testInfo, 'mute on n1 -> participant-item on n3', await waitWatch(wItem, t0));
    expect(ms).toBeLessThanOrEqual(5_000);

    w = await watch(carol, `${sel.tile('Alice')}[data-video-muted="true"]`);
    wItem = await watch(carol, `${sel.item('Alice')}[data-video-muted="true"]`);
    t0 = Date.now();
    await videoBtn.click();
    await expect(videoBtn).toHaveAttribute('aria-pressed', 'true', { timeout: 5_000 });
    ms = await waitWatch(w, t0);
    report(testInfo, 'camera off on n1 -> data-video-muted on n3', ms);
    report(testInfo, 'camera off on n1 -> participant-item on n3', await waitWatch(wItem, t0));
    expect(ms).toBeLessThanOrEqual(5_000);
    await expect(aliceOnCarol.locator('.avatar')).toBeVisible({ timeout: 5_000 });
    await expect(aliceOnCarol).toHaveAttribute('data-audio-muted', 'true');

    await sleep(1_000);
    const baseline = await allVideoFrames(carol);
    w = await watch(carol, `${sel.tile('Alice')}[data-video-muted="false"]`);
    t0 = Date.now();
    await videoBtn.click();
    await expect(videoBtn).toHaveAttribute('aria-pressed', 'false', { timeout: 5_000 });
    ms = await waitWatch(w, t0);
    const frameAt = await waitNewFrames(carol, sel.tileVideo('Alice'), baseline, 20_000);
    report(testInfo, 'camera on on n1 -> data-video-muted=false on n3', ms);
    report(testInfo, 'camera on on n1 -> first new frame decoded on n3', frameAt === null ? 'none in 20 s' : frameAt - t0);
    expect(ms).toBeLessThanOrEqual(5_000);
    expect(frameAt, "a new frame of Alice's camera on Carol's page").not.toBeNull();
    expect(frameAt - t0).toBeLessThanOrEqual(10_000);
    await expectVideoDecoding(carol, sel.tileVideo('Alice'), { label: "Alice's camera on n3 after camera-on" });
    await expect(aliceOnCarol.locator('.avatar')).toBeHidden({ timeout: 5_000 });

    w = await watch(carol, `${sel.tile('Alice')}[data-audio-muted="false"]`);
    t0 = Date.now();
    await audioBtn.click();
    ms = await waitWatch(w, t0);
    report(testInfo, 'unmute on n1 -> data-audio-muted=false on n3', ms);
    expect(ms).toBeLessThanOrEqual(5_000);
  });

  test('screen share from node 1 decodes on node 3 and goes when it stops', async ({ cluster, pages }, testInfo) => {
    const room = uniqueRoom('xshare');
    // Alice shares her screen without camera or microphone (CPU).
    const alice = await openOn(pages, cluster, 'n1', room, 'Alice', OFF);
    const carol = await openOn(pages, cluster, 'n3', room, 'Carol', OFF);
    await connectedOn(alice, 'n1');
    await connectedOn(carol, 'n3');
    await expect(tileOf(carol, 'Alice')).toHaveCount(1, { timeout: 20_000 });
    await expect(carol.getByTestId('screen-tile')).toHaveCount(0);

    const shareBtn = alice.getByTestId('share-screen');
    const wTile = await watch(carol, sel.screenTile('Alice'));
    const t0 = Date.now();
    await shareBtn.click();
    await expect(shareBtn).toHaveAttribute('aria-pressed', 'true', { timeout: 10_000 });
    const tileMs = await waitWatch(wTile, t0, { timeout: 30_000 });
    const frameAt = await waitNewFrames(carol, sel.screenVideo('Alice'), {}, 30_000);
    report(testInfo, 'share on n1 -> screen-tile on n3', tileMs);
    report(testInfo, 'share on n1 -> first screen frame decoded on n3', frameAt === null ? 'none in 30 s' : frameAt - t0);
    expect(tileMs).toBeLessThanOrEqual(8_000);
    expect(frameAt, 'a decoded frame of the shared screen on n3').not.toBeNull();
    expect(frameAt - t0).toBeLessThanOrEqual(10_000);
    const aliceId = await alice.evaluate(() => window.confab.participantId);
    await expect(screenTileOf(carol, 'Alice')).toHaveAttribute('data-participant-id', aliceId);
    const dec = await expectVideoDecoding(carol, sel.screenVideo('Alice'), { label: 'the shared screen on n3' });
    report(testInfo, 'screen on n3', `${dec.frameWidth}x${dec.frameHeight}, ${dec.fps} fps`);
    expect(dec.frameWidth).toBeGreaterThan(0);
    await expect(carol.getByTestId('grid')).toHaveAttribute('data-layout', 'spotlight', { timeout: 5_000 });
    await expect(alice.getByTestId('local-screen-tile')).toBeVisible();

    const wGone = await watch(carol, '[data-testid="screen-tile"]', { absent: true });
    const t1 = Date.now();
    await shareBtn.click();
    await expect(shareBtn).toHaveAttribute('aria-pressed', 'false', { timeout: 5_000 });
    const goneMs = await waitWatch(wGone, t1);
    report(testInfo, 'stop on n1 -> screen-tile gone on n3', goneMs);
    expect(goneMs).toBeLessThanOrEqual(5_000);
    await expect(alice.getByTestId('local-screen-tile')).toHaveCount(0, { timeout: 5_000 });
    await expect(carol.getByTestId('grid')).toHaveAttribute('data-layout', 'grid', { timeout: 5_000 });
  });

  test('chat across three nodes: everything once, in order per sender; a late joiner gets the history', async ({
    cluster, pages,
  }, testInfo) => {
    const room = uniqueRoom('xchat');
    const people = [['n1', 'Ann', 'a'], ['n2', 'Ben', 'b'], ['n3', 'Cid', 'c']];
    const byName = {};
    for (const [id, name] of people) byName[name] = await openOn(pages, cluster, id, room, name, OFF);
    for (const [id, name] of people) await connectedOn(byName[name], id);
    for (const [, name] of people) {
      await expect(byName[name].getByTestId('participant-count')).toHaveText('3', { timeout: 20_000 });
      await openChat(byName[name]);
    }

    // Three messages from each page, the pages at the same time.
    const t0 = Date.now();
    await Promise.all(people.map(async ([, name, p]) => {
      for (let i = 1; i <= 3; i++) await sendChat(byName[name], `${p}${i}`);
    }));
    const sentMs = Date.now() - t0;
    const arrived = {};
    await Promise.all(people.map(async ([, name]) => {
      await waitChat(byName[name], (ms) => ms.length >= 9, { timeout: 15_000, what: '9 messages' });
      arrived[name] = Date.now() - t0;
    }));
    report(testInfo, '9 messages typed on 3 nodes', sentMs);
    report(testInfo, 'first send -> all 9 on every page', Math.max(...Object.values(arrived)));
    await sleep(1_500); // late duplicates would show by now

    const checkHistory = (msgs, who) => {
      expect(msgs.map((m) => `${m.from}:${m.text}`), `messages on ${who}'s page`).toHaveLength(9);
      expect(new Set(msgs.map((m) => m.id)).size, `distinct data-message-id on ${who}'s page`).toBe(9);
      for (const [, name, p] of people) {
        expect(msgs.filter((m) => m.from === name).map((m) => m.text), `${name}'s messages on ${who}'s page, in order`)
          .toEqual([`${p}1`, `${p}2`, `${p}3`]);
      }
    };
    const views = {};
    for (const [, name] of people) {
      const page = byName[name];
      views[name] = await chatMessages(page);
      checkHistory(views[name], name);
      await expect(page.getByTestId('chat-error')).toBeHidden();
      const chat = await page.evaluate(() => window.confab.chat());
      expect(chat.map((c) => c.id), `window.confab.chat() ids on ${name}'s page`).toEqual(views[name].map((m) => m.id));
    }
    // A message has one id everywhere.
    const idsOf = (msgs) => Object.fromEntries(msgs.map((m) => [m.id, `${m.from}:${m.text}`]));
    expect(idsOf(views.Ben), "Ben's messages by id").toEqual(idsOf(views.Ann));
    expect(idsOf(views.Cid), "Cid's messages by id").toEqual(idsOf(views.Ann));

    // A late joiner on n3 sees the 9 messages.
    const t1 = Date.now();
    const dee = await openOn(pages, cluster, 'n3', room, 'Dee', OFF);
    await connectedOn(dee, 'n3');
    await openChat(dee);
    await waitChat(dee, (ms) => ms.length >= 9, { timeout: 15_000, what: 'the 9 messages of the history' });
    report(testInfo, 'late joiner page opened -> history shown', Date.now() - t1);
    await sleep(1_000);
    const deeView = await chatMessages(dee);
    checkHistory(deeView, 'Dee');
    expect(idsOf(deeView), "Dee's history by id").toEqual(idsOf(views.Ann));
    await expect(byName.Ann.getByTestId('participant-count')).toHaveText('4', { timeout: 15_000 });
    await dee.context().close();
    await expect(byName.Ann.getByTestId('participant-count')).toHaveText('3', { timeout: 15_000 });
  });

  test('failover: a muted participant whose node dies comes back muted, with its chat once', async ({ cluster, pages }, testInfo) => {
    test.setTimeout(150_000);
    const room = uniqueRoom('xfail');
    // Xena publishes only her microphone, muted; Yann watches.
    const yann = await openOn(pages, cluster, 'n1', room, 'Yann', OFF);
    const xena = await openOn(pages, cluster, 'n2', room, 'Xena', '&camera=off');
    await connectedOn(yann, 'n1');
    await connectedOn(xena, 'n2');
    await expect(tileOf(yann, 'Xena')).toHaveCount(1, { timeout: 20_000 });
    const muteBtn = xena.getByTestId('toggle-audio');
    await expect(muteBtn).toHaveAttribute('aria-pressed', 'false');
    await muteBtn.click();
    await expect(muteBtn).toHaveAttribute('aria-pressed', 'true', { timeout: 5_000 });
    await expect(tileOf(yann, 'Xena')).toHaveAttribute('data-audio-muted', 'true', { timeout: 5_000 });

    const before = 'from Xena before the failover';
    await openChat(xena);
    await openChat(yann);
    await sendChat(xena, before);
    const [xenaMsg] = await waitChat(xena, (ms) => ms.length === 1, { what: "Xena's message on her page" });
    await waitChat(yann, (ms) => ms.length === 1 && ms[0].text === before, { what: "Xena's message on Yann's page" });
    expect(xenaMsg.text).toBe(before);
    const oldId = await xena.evaluate(() => window.confab.participantId);

    let killed = false;
    let passed = false;
    try {
      const wBack = await watch(yann, `${sel.tile('Xena')}[data-audio-muted="true"]:not([data-participant-id="${oldId}"])`);
      const t0 = Date.now();
      cluster.node('n2').signal('SIGKILL');
      killed = true;
      await expect.poll(() => xena.evaluate(() => ({ state: window.confab.state, moved: window.confab.nodeId !== 'n2' })), {
        timeout: 60_000, intervals: [200], message: 'Xena connected again on another node',
      }).toEqual({ state: 'connected', moved: true });
      const states = (await statesOf(xena)).filter((s) => s.t >= t0 - 50);
      const rec = states.find((s) => s.state === 'reconnecting');
      const back = states.find((s) => s.state === 'connected' && rec && s.t >= rec.t);
      expect(rec, `Xena showed reconnecting (${show(states)})`).toBeTruthy();
      report(testInfo, 'n2 killed -> Xena reconnecting', rec.t - t0);
      report(testInfo, `n2 killed -> Xena connected on ${await xena.evaluate(() => window.confab.nodeId)}`, back ? back.t - t0 : 'not recorded');
      await expect(xena.getByTestId('connection-state')).toHaveText('connected');
      const newId = await xena.evaluate(() => window.confab.participantId);
      expect(newId).toBeTruthy();
      const backMs = await waitWatch(wBack, t0, { timeout: 60_000 });
      report(testInfo, "n2 killed -> Xena's tile back on Yann's page, muted", backMs);

      // One tile, the new session's, still muted; Xena's own controls too.
      await expect(tileOf(yann, 'Xena')).toHaveCount(1, { timeout: 30_000 });
      await expect(tileOf(yann, 'Xena')).toHaveAttribute('data-participant-id', newId);
      await expect(tileOf(yann, 'Xena')).toHaveAttribute('data-audio-muted', 'true');
      await expect(itemOf(yann, 'Xena')).toHaveAttribute('data-audio-muted', 'true');
      await expect(muteBtn).toHaveAttribute('aria-pressed', 'true');
      expect(await xena.evaluate(() => window.confab.mediaState.audioMuted)).toBe(true);
      await expect(xena.getByTestId('local-tile')).toHaveAttribute('data-audio-muted', 'true');

      // Chat after the failover: Yann's new message reaches Xena, whose
      // panel shows her own message exactly once.
      const after = 'from Yann after the failover';
      const t1 = Date.now();
      await sendChat(yann, after);
      await waitChat(xena, (ms) => ms.some((m) => m.text === after), { timeout: 15_000, what: "Yann's message after the failover" });
      report(testInfo, 'chat Yann -> Xena after the failover', Date.now() - t1);
      await sleep(1_000);
      const xenaView = await chatMessages(xena);
      expect(xenaView.map((m) => m.text), "Xena's chat after the failover").toEqual([before, after]);
      expect(xenaView[0].id, "her message's id").toBe(xenaMsg.id);
      const yannView = await chatMessages(yann);
      expect(yannView.map((m) => m.text), "Yann's chat after the failover").toEqual([before, after]);
      expect(new Set(yannView.map((m) => m.id)).size).toBe(2);
      passed = true;
    } finally {
      // Leave the worker's cluster whole for the next test (after a failure
      // Playwright replaces the worker and its cluster anyway).
      if (killed) {
        try {
          await cluster.node('n2').wait();
          const tr = Date.now();
          await cluster.restartNode('n2');
          await waitMembership(cluster);
          report(testInfo, 'n2 restarted and listed by all nodes', Date.now() - tr);
        } catch (err) {
          if (passed) throw err;
          console.log(`[e2e] restarting n2 after a failure: ${err.message}`);
        }
      }
    }
  });
});
