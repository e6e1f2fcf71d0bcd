// Meeting features on one node (protocol version 3, docs/protocol.md, The
// room page for tests): mute and camera-off indicators, screen share, chat,
// active speaker, pin and layouts, device switch in settings, the pre-join
// screen and the invite link. One real confab process; one browser context
// per participant; media checked through getStats(). Pages that only watch
// join with camera=off&mic=off (a 2-core box runs these tests). Speed goals
// are printed ([measure] lines and annotations); the assertions use
// generous bounds.
const crypto = require('node:crypto');
const fs = require('node:fs');
const { test: confabTest, expect, roomURL, startConfab } = require('../lib/confab');
const {
  sleep, show, sel, tileOf, itemOf, screenTileOf, report, expectConnected, dialogsOf, withPages, watch, waitWatch,
  expectVideoDecoding, allVideoFrames, waitNewFrames, liveSenders, chatMessages, openChat, sendChat, waitChat, hideTile,
  playTone, setTone,
} = require('../lib/meeting');

const test = withPages(confabTest);

// Query of a page that joins with camera and microphone off (publishes nothing).
const OFF = '&camera=off&mic=off';

const uniqueRoom = (prefix) => `${prefix}-${crypto.randomBytes(3).toString('hex')}`;

/** mediaState returns window.confab.mediaState of the page. */
const mediaState = (page) => page.evaluate(() => ({ ...window.confab.mediaState }));

/** participantOf returns the entry of name in window.confab.participants(), or null. */
const participantOf = (page, name) => page.evaluate((n) => window.confab.participants().find((p) => p.name === n) || null, name);

/**
 * expectRoster asserts that page lists exactly names (self included) in its
 * participant list, with participant-count showing their number and
 * data-self="true" on self only (others: absent or "false").
 */
async function expectRoster(page, self, names) {
  await expect(page.getByTestId('participant-count')).toHaveText(String(names.length));
  await expect(page.getByTestId('participant-item')).toHaveCount(names.length);
  for (const n of names) {
    await expect(itemOf(page, n)).toHaveCount(1);
    if (n === self) await expect(itemOf(page, n)).toHaveAttribute('data-self', 'true');
    else await expect(itemOf(page, n)).not.toHaveAttribute('data-self', 'true');
    await expect(itemOf(page, n)).toHaveAttribute('data-participant-id', /.+/);
  }
}

/** setChatValue puts text into chat-input as script would (no maxlength truncation). */
async function setChatValue(page, text) {
  await page.getByTestId('chat-input').evaluate((el, t) => {
    el.value = t;
    el.dispatchEvent(new Event('input', { bubbles: true }));
  }, text);
}

/** stays asserts that locator keeps attribute attr = value for ms (sampled every 250 ms). */
async function stays(locator, attr, value, ms, what) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    expect(await locator.getAttribute(attr), what).toBe(value);
    await sleep(250);
  }
}

/** settle waits for two animation frames (layout after a resize). */
const settle = (page) => page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));

test.describe('meeting features, one node', () => {
  test('mute and camera off show on the other page; the video comes back', async ({ confab, pages }, testInfo) => {
    const room = uniqueRoom('mute');
    const alice = await pages.open(roomURL(confab, room, 'alice'), 'alice');
    const bob = await pages.open(roomURL(confab, room, 'bob') + OFF, 'bob');
    await expectConnected(alice);
    await expectConnected(bob);
    expect(await alice.evaluate(() => window.confab.protocolVersion), 'protocol version').toBe(4);
    await expectRoster(alice, 'alice', ['alice', 'bob']);
    await expectRoster(bob, 'bob', ['alice', 'bob']);

    // Bob joined with camera=off&mic=off: his buttons say so, he sends no
    // track, and Alice sees his avatar.
    await expect(bob.getByTestId('toggle-audio')).toHaveAttribute('aria-pressed', 'true');
    await expect(bob.getByTestId('toggle-video')).toHaveAttribute('aria-pressed', 'true');
    expect(await mediaState(bob)).toMatchObject({ audioMuted: true, videoMuted: true, sharing: false });
    expect(await liveSenders(bob), "live tracks on Bob's senders").toEqual([]);
    const bobOnAlice = tileOf(alice, 'bob');
    await expect(bobOnAlice).toHaveCount(1);
    await expect(bobOnAlice).toHaveAttribute('data-audio-muted', 'true');
    await expect(bobOnAlice).toHaveAttribute('data-video-muted', 'true');
    await expect(bobOnAlice.locator('.avatar')).toBeVisible();
    await expect(bobOnAlice.locator('.avatar')).toContainText(/b/i);

    // Alice publishes both; Bob decodes her camera.
    const aliceOnBob = tileOf(bob, 'alice');
    const audioBtn = alice.getByTestId('toggle-audio');
    const videoBtn = alice.getByTestId('toggle-video');
    await expect(audioBtn).toHaveAttribute('aria-pressed', 'false');
    await expect(videoBtn).toHaveAttribute('aria-pressed', 'false');
    expect(await liveSenders(alice), "live tracks on Alice's senders").toEqual(['audio', 'video']);
    await expect(aliceOnBob).toHaveAttribute('data-audio-muted', 'false');
    await expect(aliceOnBob).toHaveAttribute('data-video-muted', 'false');
    const first = await expectVideoDecoding(bob, sel.tileVideo('alice'), { label: "Alice's camera on Bob's page" });
    report(testInfo, "Alice's camera on Bob's page", `${first.frameWidth}x${first.frameHeight}, ${first.fps} fps`);
    await expect(aliceOnBob.locator('.avatar')).toBeHidden();

    await test.step('Alice mutes her microphone', async () => {
      const wTile = await watch(bob, `${sel.tile('alice')}[data-audio-muted="true"]`);
      const wItem = await watch(bob, `${sel.item('alice')}[data-audio-muted="true"]`);
      const t0 = Date.now();
      await audioBtn.click();
      await expect(audioBtn).toHaveAttribute('aria-pressed', 'true', { timeout: 5_000 });
      const tileMs = await waitWatch(wTile, t0);
      const itemMs = await waitWatch(wItem, t0);
      report(testInfo, "mute click -> data-audio-muted on Bob's tile of Alice", tileMs);
      report(testInfo, "mute click -> Bob's participant-item of Alice", itemMs);
      expect(tileMs, 'ms until the mute shows on the other page').toBeLessThanOrEqual(5_000);
      expect(itemMs, 'ms until the mute shows in the participant list').toBeLessThanOrEqual(5_000);
      await expect(alice.getByTestId('local-tile')).toHaveAttribute('data-audio-muted', 'true');
      await expect(itemOf(alice, 'alice')).toHaveAttribute('data-audio-muted', 'true');
      await expect(aliceOnBob).toHaveAttribute('data-video-muted', 'false');
      expect(await mediaState(alice)).toMatchObject({ audioMuted: true, videoMuted: false, sharing: false });
      expect(await participantOf(bob, 'alice')).toMatchObject({ audioMuted: true, videoMuted: false, self: false });
    });

    await test.step('Alice turns her camera off', async () => {
      const wTile = await watch(bob, `${sel.tile('alice')}[data-video-muted="true"]`);
      const t0 = Date.now();
      await videoBtn.click();
      await expect(videoBtn).toHaveAttribute('aria-pressed', 'true', { timeout: 5_000 });
      const ms = await waitWatch(wTile, t0);
      report(testInfo, "camera-off click -> data-video-muted on Bob's tile of Alice", ms);
      expect(ms, 'ms until camera-off shows on the other page').toBeLessThanOrEqual(5_000);
      await expect(aliceOnBob.locator('.avatar')).toBeVisible({ timeout: 5_000 });
      await expect(aliceOnBob.locator('.avatar')).toContainText(/a/i);
      await expect(itemOf(bob, 'alice')).toHaveAttribute('data-video-muted', 'true');
      await expect(itemOf(alice, 'alice')).toHaveAttribute('data-video-muted', 'true');
      await expect(alice.getByTestId('local-tile')).toHaveAttribute('data-video-muted', 'true');
      await expect(aliceOnBob, 'the microphone stays muted').toHaveAttribute('data-audio-muted', 'true');
      expect(await mediaState(alice)).toMatchObject({ audioMuted: true, videoMuted: true });
      expect(await participantOf(bob, 'alice')).toMatchObject({ audioMuted: true, videoMuted: true });
    });

    await test.step('Alice turns her camera on again: frames decode on Bob\'s page', async () => {
      await sleep(1_000);
      const baseline = await allVideoFrames(bob);
      const wTile = await watch(bob, `${sel.tile('alice')}[data-video-muted="false"]`);
      const t0 = Date.now();
      await videoBtn.click();
      await expect(videoBtn).toHaveAttribute('aria-pressed', 'false', { timeout: 5_000 });
      const flagMs = await waitWatch(wTile, t0);
      const frameAt = await waitNewFrames(bob, sel.tileVideo('alice'), baseline, 20_000);
      report(testInfo, "camera-on click -> data-video-muted=false on Bob's page", flagMs);
      report(testInfo, "camera-on click -> first new frame decoded on Bob's page", frameAt === null ? 'none in 20 s' : frameAt - t0);
      expect(flagMs).toBeLessThanOrEqual(5_000);
      expect(frameAt, "a new frame of Alice's camera on Bob's page").not.toBeNull();
      expect(frameAt - t0, 'ms from camera-on to a new decoded frame').toBeLessThanOrEqual(8_000);
      await expectVideoDecoding(bob, sel.tileVideo('alice'), { label: "Alice's camera after camera-on" });
      await expect(aliceOnBob.locator('.avatar')).toBeHidden({ timeout: 5_000 });
      await expect(itemOf(bob, 'alice')).toHaveAttribute('data-video-muted', 'false');
      expect(await mediaState(alice)).toMatchObject({ audioMuted: true, videoMuted: false });
    });

    await test.step('Alice unmutes', async () => {
      const w = await watch(bob, `${sel.tile('alice')}[data-audio-muted="false"]`);
      const t0 = Date.now();
      await audioBtn.click();
      await expect(audioBtn).toHaveAttribute('aria-pressed', 'false', { timeout: 5_000 });
      const ms = await waitWatch(w, t0);
      report(testInfo, 'unmute click -> data-audio-muted=false on Bob\'s page', ms);
      expect(ms).toBeLessThanOrEqual(5_000);
      await expect(itemOf(bob, 'alice')).toHaveAttribute('data-audio-muted', 'false');
    });
  });

  test('screen share: the viewer gets a screen tile that decodes, spotlight, and it goes when sharing stops', async ({ confab, pages }, testInfo) => {
    const room = uniqueRoom('share');
    const alice = await pages.open(roomURL(confab, room, 'alice'), 'alice');
    const bob = await pages.open(roomURL(confab, room, 'bob') + OFF, 'bob');
    await expectConnected(alice);
    await expectConnected(bob);
    await expect(tileOf(bob, 'alice')).toHaveCount(1);
    const cam = await expectVideoDecoding(bob, sel.tileVideo('alice'), { label: "Alice's camera" });
    await expect(bob.getByTestId('screen-tile')).toHaveCount(0);
    await expect(bob.getByTestId('grid')).toHaveAttribute('data-layout', 'grid');
    const shareBtn = alice.getByTestId('share-screen');
    await expect(shareBtn).toHaveAttribute('aria-pressed', 'false');

    const wTile = await watch(bob, sel.screenTile('alice'));
    const t0 = Date.now();
    await shareBtn.click();
    await expect(shareBtn).toHaveAttribute('aria-pressed', 'true', { timeout: 10_000 });
    const tileMs = await waitWatch(wTile, t0);
    const frameAt = await waitNewFrames(bob, sel.screenVideo('alice'), {}, 20_000);
    report(testInfo, "share click -> screen-tile on Bob's page", tileMs);
    report(testInfo, "share click -> first screen frame decoded on Bob's page", frameAt === null ? 'none in 20 s' : frameAt - t0);
    expect(tileMs, 'ms until the screen tile shows').toBeLessThanOrEqual(5_000);
    expect(frameAt, 'a decoded frame of the shared screen').not.toBeNull();
    expect(frameAt - t0, 'ms until the first screen frame').toBeLessThanOrEqual(10_000);

    const screenTile = screenTileOf(bob, 'alice');
    await expect(bob.getByTestId('screen-tile')).toHaveCount(1);
    const aliceId = await tileOf(bob, 'alice').getAttribute('data-participant-id');
    await expect(screenTile).toHaveAttribute('data-participant-id', aliceId);
    const screenVideo = screenTile.getByTestId('screen-video');
    await expect(screenVideo).toHaveCount(1);
    const screenProducer = await screenVideo.getAttribute('data-producer-id');
    expect(screenProducer, 'producer id of the screen video').toBeTruthy();
    expect(screenProducer, 'the screen is its own producer').not.toBe(cam.producerId);
    const dec = await expectVideoDecoding(bob, sel.screenVideo('alice'), { label: 'the shared screen' });
    report(testInfo, 'screen on Bob\'s page', `${dec.frameWidth}x${dec.frameHeight}, ${dec.fps} fps`);
    expect(dec.frameWidth).toBeGreaterThan(0);
    expect(dec.producerId).toBe(screenProducer);
    await expect(bob.getByTestId('grid')).toHaveAttribute('data-layout', 'spotlight', { timeout: 5_000 });
    await expect(alice.getByTestId('local-screen-tile')).toBeVisible();
    expect(await mediaState(alice)).toMatchObject({ sharing: true });
    await expect(tileOf(bob, 'alice'), "Alice's camera tile while she shares").toHaveCount(1);

    const wGone = await watch(bob, '[data-testid="screen-tile"]', { absent: true });
    const t1 = Date.now();
    await shareBtn.click();
    await expect(shareBtn).toHaveAttribute('aria-pressed', 'false', { timeout: 5_000 });
    const goneMs = await waitWatch(wGone, t1);
    report(testInfo, "stop click -> screen-tile gone on Bob's page", goneMs);
    expect(goneMs, 'ms until the screen tile goes').toBeLessThanOrEqual(5_000);
    await expect(alice.getByTestId('local-screen-tile')).toHaveCount(0, { timeout: 5_000 });
    await expect(bob.getByTestId('grid')).toHaveAttribute('data-layout', 'grid', { timeout: 5_000 });
    expect(await mediaState(alice)).toMatchObject({ sharing: false });
    await expect(bob.locator(`[data-producer-id="${screenProducer}"]`)).toHaveCount(0);
    await expectVideoDecoding(bob, sel.tileVideo('alice'), { label: "Alice's camera after sharing" });
  });

  test('chat: text stays text, oversized messages are refused, the unread badge counts', async ({ confab, pages }, testInfo) => {
    const room = uniqueRoom('chat');
    const alice = await pages.open(roomURL(confab, room, 'alice') + OFF, 'alice');
    const bob = await pages.open(roomURL(confab, room, 'bob') + OFF, 'bob');
    await expectConnected(alice);
    await expectConnected(bob);
    await expectRoster(alice, 'alice', ['alice', 'bob']);
    await expectRoster(bob, 'bob', ['alice', 'bob']);

    const badge = bob.getByTestId('toggle-chat').getByTestId('unread-badge');
    const badgeSel = '[data-testid="toggle-chat"] [data-testid="unread-badge"]';
    await expect(bob.getByTestId('chat-panel')).toBeHidden();
    await expect(badge).toBeHidden();
    await openChat(alice);

    const XSS = '<img src=x onerror=alert(1)>';
    await test.step('an HTML-looking message is shown as text; the closed panel counts it', async () => {
      const w = await watch(bob, badgeSel, { text: '1' });
      const t0 = Date.now();
      await sendChat(alice, XSS);
      const ms = await waitWatch(w, t0);
      report(testInfo, "send -> unread badge 1 on Bob's closed panel", ms);
      expect(ms).toBeLessThanOrEqual(5_000);
      await expect(badge).toBeVisible();
      await expect(badge).toHaveText('1');
      const mine = await waitChat(alice, (ms) => ms.length === 1, { what: "Alice's own message" });
      expect(mine[0]).toMatchObject({ from: 'alice', text: XSS });
      expect(mine[0].id, 'data-message-id').toBeTruthy();
      await expect(alice.getByTestId('chat-input')).toHaveValue('');

      await sendChat(alice, 'hello bob');
      await expect(badge).toHaveText('2', { timeout: 5_000 });
    });

    await test.step('opening the panel clears the badge and shows both messages', async () => {
      await openChat(bob);
      await expect(badge).toBeHidden({ timeout: 5_000 });
      const got = await waitChat(bob, (ms) => ms.length >= 2, { what: "Bob's two messages" });
      expect(got.map((m) => m.text)).toEqual([XSS, 'hello bob']);
      const sent = await chatMessages(alice);
      expect(got.map((m) => m.id), 'message ids on both pages').toEqual(sent.map((m) => m.id));
      expect(new Set(got.map((m) => m.id)).size).toBe(2);
      for (const m of got) {
        expect(m.from).toBe('alice');
        expect(m.fromText).toContain('alice');
        expect((m.time || '').trim(), 'chat-time').not.toBe('');
      }
      for (const page of [alice, bob]) {
        await expect(page.getByTestId('chat-panel').locator('img'), 'an <img> inside the chat panel').toHaveCount(0);
        const text = await page.getByTestId('chat-text').first().evaluate((el) => el.textContent);
        expect(text).toBe(XSS);
      }
      const chat = await bob.evaluate(() => window.confab.chat());
      expect(chat.map((c) => ({ text: c.text, fromName: c.fromName, id: c.id })))
        .toEqual(got.map((m) => ({ text: m.text, fromName: 'alice', id: m.id })));
      await sleep(1_000);
      expect(dialogsOf(alice), 'dialogs on Alice\'s page').toEqual([]);
      expect(dialogsOf(bob), 'dialogs on Bob\'s page').toEqual([]);
    });

    await test.step('more than 2048 bytes of UTF-8 is refused and not delivered', async () => {
      const error = alice.getByTestId('chat-error');
      await setChatValue(alice, 'x'.repeat(3000));
      await alice.getByTestId('chat-input').press('Enter');
      await expect(error).toBeVisible({ timeout: 5_000 });
      await expect(error).toHaveText(/\S/);
      report(testInfo, 'chat-error for 3000 bytes', await error.textContent());

      // 1024 x "é" is exactly 2048 bytes: accepted; one byte more is not.
      const exact = 'é'.repeat(1024);
      await sendChat(alice, exact);
      await waitChat(bob, (ms) => ms.some((m) => m.text === exact), { what: 'the 2048-byte message' });
      await setChatValue(alice, `${exact}x`);
      await alice.getByTestId('chat-input').press('Enter');
      await expect(error).toBeVisible({ timeout: 5_000 });

      // A message sent after the refused ones arrives after them if they
      // were delivered at all (one node, one sender: in order).
      await sendChat(alice, 'after the refusals');
      const got = await waitChat(bob, (ms) => ms.some((m) => m.text === 'after the refusals'), { what: 'the message after the refusals' });
      expect(got.map((m) => (m.text.length > 40 ? `${m.text.length} chars` : m.text)))
        .toEqual([XSS, 'hello bob', '1024 chars', 'after the refusals']);
      expect(got[2].text).toBe(exact);
    });

    await test.step('an open panel counts nothing; closed again, it counts anew', async () => {
      await expect(badge).toBeHidden();
      await bob.getByTestId('toggle-chat').click();
      await expect(bob.getByTestId('chat-panel')).toBeHidden({ timeout: 5_000 });
      await expect(badge).toBeHidden();
      await sendChat(alice, 'are you there?');
      await expect(badge).toBeVisible({ timeout: 5_000 });
      await expect(badge).toHaveText('1');
    });
  });

  test('active speaker: the talking participant is highlighted, and the highlight moves', async ({ confab, pages }, testInfo) => {
    const room = uniqueRoom('speak');
    // Audio only: the cameras are not needed.
    const alice = await pages.open(roomURL(confab, room, 'alice') + '&camera=off', 'alice');
    const bob = await pages.open(roomURL(confab, room, 'bob') + '&camera=off', 'bob');
    await expectConnected(alice);
    await expectConnected(bob);
    await expect(tileOf(alice, 'bob')).toHaveCount(1);
    await expect(tileOf(bob, 'alice')).toHaveCount(1);

    // A click gives each page the user activation its AudioContext needs;
    // both start silent (this replaces Chromium's beeping fake microphone).
    for (const page of [alice, bob]) {
      await page.getByTestId('connection-state').click();
      expect(await playTone(page, 0), 'AudioContext state').toBe('running');
    }
    const aliceOnBob = tileOf(bob, 'alice');
    const bobOnAlice = tileOf(alice, 'bob');
    await expect(aliceOnBob).toHaveAttribute('data-speaking', 'false', { timeout: 10_000 });
    await expect(bobOnAlice).toHaveAttribute('data-speaking', 'false', { timeout: 10_000 });

    await test.step('Alice talks', async () => {
      const wTile = await watch(bob, `${sel.tile('alice')}[data-speaking="true"]`);
      const wItem = await watch(bob, `${sel.item('alice')}[data-speaking="true"]`);
      const t0 = Date.now();
      await setTone(alice, 0.5);
      const tileMs = await waitWatch(wTile, t0);
      const itemMs = await waitWatch(wItem, t0);
      report(testInfo, "Alice starts talking -> her tile speaking on Bob's page", tileMs);
      report(testInfo, "Alice starts talking -> her participant-item speaking on Bob's page", itemMs);
      expect(tileMs, 'ms until the talker is highlighted').toBeLessThanOrEqual(5_000);
      expect(itemMs).toBeLessThanOrEqual(5_000);
      await stays(bobOnAlice, 'data-speaking', 'false', 2_000, "silent Bob's tile on Alice's page");
      await expect(itemOf(alice, 'bob')).toHaveAttribute('data-speaking', 'false');
      expect(await participantOf(bob, 'alice')).toMatchObject({ speaking: true });
    });

    await test.step('Bob talks, Alice is silent: the highlight moves', async () => {
      const wBob = await watch(alice, `${sel.tile('bob')}[data-speaking="true"]`);
      const wAlice = await watch(bob, `${sel.tile('alice')}[data-speaking="false"]`);
      const t0 = Date.now();
      await setTone(alice, 0);
      await setTone(bob, 0.5);
      const onMs = await waitWatch(wBob, t0);
      const offMs = await waitWatch(wAlice, t0);
      report(testInfo, "swap -> Bob's tile speaking on Alice's page", onMs);
      report(testInfo, "swap -> Alice's tile not speaking on Bob's page", offMs);
      expect(onMs).toBeLessThanOrEqual(5_000);
      expect(offMs).toBeLessThanOrEqual(5_000);
      await expect(itemOf(alice, 'bob')).toHaveAttribute('data-speaking', 'true', { timeout: 5_000 });
      await stays(aliceOnBob, 'data-speaking', 'false', 2_000, "silent Alice's tile on Bob's page");
      expect(await participantOf(alice, 'bob')).toMatchObject({ speaking: true });
    });
  });

  test('active speaker: with more tiles than fit on a phone, the speaker is brought into view', async ({ confab, pages }, testInfo) => {
    const room = uniqueRoom('crowd');
    // The talker joins first (Chromium's fake microphone beeps, so it is
    // silenced at once) and so has the second tile on the viewer's page;
    // the viewer then scrolls the grid down past it.
    const talker = await pages.open(roomURL(confab, room, 'talker') + '&camera=off', 'talker');
    await expectConnected(talker);
    await talker.getByTestId('connection-state').click();
    expect(await playTone(talker, 0), 'AudioContext state').toBe('running');
    const viewer = await pages.open(roomURL(confab, room, 'viewer') + OFF, 'viewer', {
      contextOptions: { viewport: { width: 390, height: 844 } },
    });
    await expectConnected(viewer);
    // Twelve tiles in two columns: six rows of at least 120 px.
    const silent = Array.from({ length: 10 }, (_, i) => `p${i + 1}`);
    for (const n of silent) await pages.open(roomURL(confab, room, n) + OFF, n);
    await expect(viewer.getByTestId('remote-tile')).toHaveCount(1 + silent.length, { timeout: 30_000 });
    const talkerTile = tileOf(viewer, 'talker');
    await expect(talkerTile).toHaveAttribute('data-speaking', 'false', { timeout: 10_000 });

    // inView: the talker's tile lies wholly inside the grid's visible box.
    const view = () => viewer.getByTestId('grid').evaluate((grid) => {
      const g = grid.getBoundingClientRect();
      const t = grid.querySelector('[data-testid="remote-tile"][data-participant-name="talker"]').getBoundingClientRect();
      return {
        inView: t.top >= g.top - 1 && t.bottom <= g.bottom + 1,
        overflow: grid.scrollHeight - grid.clientHeight,
        scrollTop: grid.scrollTop,
      };
    });
    await viewer.getByTestId('grid').evaluate((grid) => { grid.scrollTop = grid.scrollHeight; });
    await settle(viewer);
    const before = await view();
    report(testInfo, 'grid overflow at 390x844 with 12 tiles', `${before.overflow} px`);
    expect(before.overflow, 'twelve tiles do not fit on a phone screen').toBeGreaterThan(0);
    expect(before.scrollTop, 'the grid is scrolled down').toBeGreaterThan(0);
    expect(before.inView, "the talker's tile is scrolled out of view").toBe(false);

    const w = await watch(viewer, `${sel.tile('talker')}[data-speaking="true"]`);
    const t0 = Date.now();
    await setTone(talker, 0.5);
    const ms = await waitWatch(w, t0);
    report(testInfo, "talker starts -> tile speaking on the viewer's scrolled phone grid", ms);
    expect(ms).toBeLessThanOrEqual(5_000);
    expect((await view()).inView, "the speaker's tile is in view as soon as it is highlighted").toBe(true);
    const after = await view();
    expect(after.scrollTop, "the viewer's scroll position is kept").toBe(before.scrollTop);
    await expect(viewer.getByTestId('remote-tile')).toHaveCount(1 + silent.length);
    for (const n of silent) await expect(tileOf(viewer, n)).toHaveAttribute('data-speaking', 'false');
  });

  test('switching the camera in settings keeps the session, and the choice is remembered', async ({
    confab, pages, playwright, launchOptions,
  }, testInfo) => {
    const args = launchOptions.args || [];
    expect(args, "the config's Chromium flags").toContain('--use-fake-device-for-media-stream');
    // Chromium's fake cameras: the first is I420, the second a Y16 depth
    // camera (it plays in a <video> but the encoder drops its frames), the
    // third MJPEG. Three are listed; the test switches to the last one.
    const twoCameras = await playwright.chromium.launch({
      ...launchOptions,
      args: args.map((a) => (a === '--use-fake-device-for-media-stream' ? '--use-fake-device-for-media-stream=device-count=3' : a)),
    });
    try {
      const room = uniqueRoom('device');
      const alice = await pages.open(roomURL(confab, room, 'alice'), 'alice', { browser: twoCameras });
      const bob = await pages.open(roomURL(confab, room, 'bob') + OFF, 'bob', { browser: twoCameras });
      await expectConnected(alice);
      await expectConnected(bob);
      const cam = await expectVideoDecoding(bob, sel.tileVideo('alice'), { label: "Alice's camera" });

      const marker = `m-${crypto.randomBytes(4).toString('hex')}`;
      const videoSender = () => alice.evaluate(() => {
        const pc = window.confab && window.confab.pcs && window.confab.pcs.publisher;
        const s = pc && pc.getSenders().find((x) => x.track && x.track.kind === 'video');
        return {
          participantId: window.confab ? window.confab.participantId : null,
          marker: pc ? pc.__e2eMarker || null : null,
          pcState: pc ? pc.connectionState : null,
          deviceId: s ? s.track.getSettings().deviceId : null,
          readyState: s ? s.track.readyState : null,
        };
      });
      await alice.evaluate((m) => { window.confab.pcs.publisher.__e2eMarker = m; }, marker);
      const before = await videoSender();
      expect(before.deviceId, 'deviceId of the camera track').toBeTruthy();

      await alice.getByTestId('open-settings').click();
      const dialog = alice.getByTestId('settings-dialog');
      await expect(dialog).toBeVisible({ timeout: 5_000 });
      expect(await dialog.evaluate((d) => d.tagName)).toBe('DIALOG');
      const select = alice.getByTestId('camera-select');
      const cameraIds = () => select.locator('option').evaluateAll((os) => os.map((o) => o.value).filter((v) => v));
      await expect.poll(cameraIds, { timeout: 5_000, message: 'cameras in camera-select' }).toHaveLength(3);
      await expect(select).toHaveValue(before.deviceId);
      await expect.poll(() => alice.getByTestId('mic-select').locator('option').count(), { message: 'mic-select options' }).toBeGreaterThan(0);
      const ids = await cameraIds();
      const other = ids[ids.length - 1];
      expect(other, 'the camera switched to').not.toBe(before.deviceId);

      const t0 = Date.now();
      await select.selectOption(other);
      await expect.poll(async () => (await videoSender()).deviceId, { timeout: 10_000, intervals: [50], message: 'deviceId of the sent camera track' }).toBe(other);
      report(testInfo, 'select the other camera -> the sender sends it', Date.now() - t0);
      const after = await videoSender();
      expect(after, 'same session, same publisher peer connection').toEqual({
        participantId: before.participantId, marker, pcState: 'connected', deviceId: other, readyState: 'live',
      });
      // The same producer goes on (replaceTrack): Bob's video element keeps
      // its producer id and decodes frames of the new camera.
      await expect(tileOf(bob, 'alice').getByTestId('remote-video')).toHaveAttribute('data-producer-id', cam.producerId);
      const baseline = await allVideoFrames(bob);
      await expectVideoDecoding(bob, sel.tileVideo('alice'), { label: "Alice's camera after the switch" });
      expect(await waitNewFrames(bob, sel.tileVideo('alice'), baseline, 5_000)).not.toBeNull();
      await expect(tileOf(bob, 'alice')).toHaveCount(1);
      await alice.getByTestId('settings-close').click();
      await expect(dialog).toBeHidden({ timeout: 5_000 });

      // The next visit (reload) uses and shows the chosen camera.
      await alice.reload();
      await expectConnected(alice);
      await expect.poll(async () => (await videoSender()).deviceId, { timeout: 10_000, message: 'camera after reload' }).toBe(other);
      await alice.getByTestId('open-settings').click();
      await expect(dialog).toBeVisible({ timeout: 5_000 });
      await expect(select).toHaveValue(other, { timeout: 5_000 });
      await expect(tileOf(bob, 'alice')).toHaveCount(1, { timeout: 10_000 });
      await expectVideoDecoding(bob, sel.tileVideo('alice'), { label: "Alice's camera after the reload" });
    } finally {
      await pages.close();
      await twoCameras.close().catch(() => {});
    }
  });

  test('pre-join: camera preview, microphone level, joining with the camera off', async ({ confab, pages }, testInfo) => {
    const room = uniqueRoom('prejoin');
    const bob = await pages.open(roomURL(confab, room, 'bob') + OFF, 'bob');
    await expectConnected(bob);

    const t0 = Date.now();
    const alice = await pages.open(`${confab.url}/rooms/${room}`, 'alice');
    await expect(alice.getByTestId('name-prompt')).toBeVisible();
    const preview = alice.getByTestId('prejoin-video');
    expect(await preview.evaluate((v) => v.tagName)).toBe('VIDEO');
    await expect.poll(() => preview.evaluate((v) => (v.paused ? 0 : v.videoWidth)), { timeout: 15_000, intervals: [100], message: 'a playing camera preview' })
      .toBeGreaterThan(0);
    report(testInfo, 'page opened -> camera preview playing', Date.now() - t0);

    const meter = alice.getByTestId('prejoin-mic-level');
    expect(await meter.evaluate((m) => m.tagName)).toBe('METER');
    const level = await meter.evaluate(async (m) => {
      const start = Date.now();
      let max = 0;
      let firstAt = null;
      while (Date.now() - start < 8_000) {
        const v = Number(m.value);
        if (v > max) max = v;
        if (v > 0 && firstAt === null) firstAt = Date.now() - start;
        if (max > 0 && Date.now() - start > 2_000) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      return { max, firstAt };
    });
    report(testInfo, 'microphone level', show(level));
    expect(level.max, 'highest prejoin-mic-level value').toBeGreaterThan(0);
    expect(level.max).toBeLessThanOrEqual(1);

    await expect(alice.getByTestId('prejoin-camera')).toBeChecked();
    await expect(alice.getByTestId('prejoin-mic')).toBeChecked();
    await alice.getByTestId('prejoin-camera').uncheck();
    await expect(alice.getByTestId('prejoin-camera')).not.toBeChecked();
    await alice.getByTestId('name-input').fill('alice');
    await alice.getByTestId('join-button').click();
    await alice.waitForURL((u) => u.searchParams.get('name') === 'alice' && u.searchParams.get('camera') === 'off', { timeout: 10_000 });
    expect(new URL(alice.url()).searchParams.get('mic'), 'mic param after joining with the mic on').not.toBe('off');
    await expectConnected(alice);
    await expect(alice.getByTestId('toggle-video')).toHaveAttribute('aria-pressed', 'true');
    await expect(alice.getByTestId('toggle-audio')).toHaveAttribute('aria-pressed', 'false');
    expect(await liveSenders(alice), 'live tracks sent (camera off, mic on)').toEqual(['audio']);

    const aliceOnBob = tileOf(bob, 'alice');
    await expect(aliceOnBob).toHaveCount(1, { timeout: 10_000 });
    await expect(aliceOnBob).toHaveAttribute('data-video-muted', 'true');
    await expect(aliceOnBob).toHaveAttribute('data-audio-muted', 'false');
    await expect(aliceOnBob.locator('.avatar')).toBeVisible();
    await expect(itemOf(bob, 'alice')).toHaveAttribute('data-video-muted', 'true');

    // Turning the camera on later publishes it.
    const baseline = await allVideoFrames(bob);
    const t1 = Date.now();
    await alice.getByTestId('toggle-video').click();
    await expect(alice.getByTestId('toggle-video')).toHaveAttribute('aria-pressed', 'false', { timeout: 10_000 });
    await expect(aliceOnBob).toHaveAttribute('data-video-muted', 'false', { timeout: 5_000 });
    const frameAt = await waitNewFrames(bob, sel.tileVideo('alice'), baseline, 20_000);
    report(testInfo, 'camera on after a camera-off join -> first frame on Bob\'s page', frameAt === null ? 'none in 20 s' : frameAt - t1);
    expect(frameAt, "a frame of Alice's camera on Bob's page").not.toBeNull();
    expect(frameAt - t1).toBeLessThanOrEqual(10_000);
    await expectVideoDecoding(bob, sel.tileVideo('alice'), { label: "Alice's camera" });
  });

  test('layout: pin to spotlight and back; desktop and phone screenshots; controls fit a phone', async ({ confab, pages }, testInfo) => {
    const room = uniqueRoom('layout');
    const alice = await pages.open(roomURL(confab, room, 'alice'), 'alice');
    const bob = await pages.open(roomURL(confab, room, 'bob') + OFF, 'bob', { contextOptions: { viewport: { width: 1280, height: 800 } } });
    const carol = await pages.open(roomURL(confab, room, 'carol') + OFF, 'carol');
    const dave = await pages.open(roomURL(confab, room, 'dave') + OFF, 'dave');
    for (const page of [alice, bob, carol, dave]) await expectConnected(page);
    // Only Bob (the page photographed) watches Alice's camera.
    for (const page of [carol, dave]) {
      await expect(tileOf(page, 'alice')).toHaveCount(1);
      await hideTile(page, 'alice');
    }
    await expect(bob.getByTestId('remote-tile')).toHaveCount(3);
    await expectRoster(bob, 'bob', ['alice', 'bob', 'carol', 'dave']);
    await expectVideoDecoding(bob, sel.tileVideo('alice'), { label: "Alice's camera on Bob's page" });

    const grid = bob.getByTestId('grid');
    await expect(grid).toHaveAttribute('data-layout', 'grid');
    for (const n of ['alice', 'carol', 'dave']) await expect(tileOf(bob, n)).toHaveAttribute('data-pinned', 'false');
    await tileOf(bob, 'carol').click();
    await expect(tileOf(bob, 'carol')).toHaveAttribute('data-pinned', 'true', { timeout: 5_000 });
    await expect(grid).toHaveAttribute('data-layout', 'spotlight', { timeout: 5_000 });
    for (const n of ['alice', 'dave']) await expect(tileOf(bob, n)).toHaveAttribute('data-pinned', 'false');
    // Pinning is local to the page.
    await expect(carol.getByTestId('grid')).toHaveAttribute('data-layout', 'grid');
    await tileOf(bob, 'carol').click();
    await expect(tileOf(bob, 'carol')).toHaveAttribute('data-pinned', 'false', { timeout: 5_000 });
    await expect(grid).toHaveAttribute('data-layout', 'grid', { timeout: 5_000 });

    const shoot = async (file) => {
      const path = testInfo.outputPath(file);
      await bob.screenshot({ path });
      expect(fs.statSync(path).size, `${file} size`).toBeGreaterThan(1_000);
      await testInfo.attach(file, { path, contentType: 'image/png' });
    };
    const scrollWidth = () => bob.evaluate(() => document.documentElement.scrollWidth);

    await bob.setViewportSize({ width: 1280, height: 800 });
    await settle(bob);
    expect(await scrollWidth(), 'page width at 1280x800').toBeLessThanOrEqual(1281);
    await shoot('room-desktop.png');

    await bob.setViewportSize({ width: 390, height: 844 });
    await settle(bob);
    await sleep(300);
    const sw = await scrollWidth();
    report(testInfo, 'document scrollWidth at 390x844', sw);
    expect(sw, 'no horizontal scrolling at 390 px').toBeLessThanOrEqual(391);
    for (const id of ['toggle-audio', 'toggle-video', 'share-screen', 'toggle-chat', 'leave']) {
      const btn = bob.getByTestId(id);
      await expect(btn, `${id} at phone width`).toBeVisible();
      await expect(btn, `accessible name of ${id}`).toHaveAccessibleName(/\S/);
      const box = await btn.boundingBox();
      expect(box, `${id} has a box`).not.toBeNull();
      expect(box.x, `${id} left edge`).toBeGreaterThanOrEqual(-1);
      expect(box.x + box.width, `${id} right edge`).toBeLessThanOrEqual(391);
    }
    await expect(bob.getByTestId('remote-tile')).toHaveCount(3);
    await shoot('room-phone.png');
  });

  test('invite copies the room link, which opens the pre-join screen', async ({ confab, pages }) => {
    const room = uniqueRoom('invite');
    const alice = await pages.open(roomURL(confab, room, 'alice') + OFF, 'alice', {
      contextOptions: { permissions: ['camera', 'microphone', 'clipboard-read', 'clipboard-write'] },
    });
    await expectConnected(alice);
    await alice.getByTestId('invite').click();
    await expect(alice.getByTestId('notice')).toBeVisible({ timeout: 5_000 });
    await expect(alice.getByTestId('notice')).toHaveText(/\S/);
    const link = await alice.evaluate(() => navigator.clipboard.readText());
    const u = new URL(link);
    expect(u.origin, 'origin of the invite link').toBe(new URL(confab.url).origin);
    expect(u.pathname).toBe(`/rooms/${room}`);
    expect(u.searchParams.get('name'), "the inviter's name in the link").toBeNull();
    const guest = await pages.open(link, 'guest');
    await expect(guest.getByTestId('name-prompt')).toBeVisible();
  });

  test('a node held at protocol version 2 (a rolling upgrade): the page joins with version 2 and says what is missing', async ({ pages }, testInfo) => {
    const old = await startConfab({ nodeId: 'old-node', extraArgs: ['--max-protocol', '2'] });
    try {
      const room = uniqueRoom('old');
      const alice = await pages.open(roomURL(old, room, 'alice'), 'alice');
      const bob = await pages.open(roomURL(old, room, 'bob') + OFF, 'bob');
      await expectConnected(alice);
      await expectConnected(bob);
      expect(await alice.evaluate(() => window.confab.protocolVersion), 'protocol version on a version 2 node').toBe(2);
      await expect(alice.getByTestId('notice')).toContainText('protocol version 2');
      await expect(alice.getByTestId('notice')).toContainText('chat');
      await expect(alice.getByTestId('chat-input')).toBeDisabled();
      // Media still flows: simulcast and tile reports are version 2.
      await expectVideoDecoding(bob, sel.tileVideo('alice'), { label: "Alice's camera on a version 2 node" });
    } finally {
      await old.stop().catch(() => {});
      if (testInfo.status !== testInfo.expectedStatus) {
        await testInfo.attach('old-node.log', { body: old.logs(), contentType: 'text/plain' });
      }
    }
  });
});
