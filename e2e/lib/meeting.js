// Helpers for the meeting-feature browser tests (tests/meeting.spec.js on one
// node, tests/meeting-cluster.spec.js on three): the room page's hooks of
// protocol version 3 (mute state, screen share, chat, participant list,
// active speaker, pin, settings, pre-join), see docs/protocol.md.
//
//   withPages(test)        adds the fixture `pages`: pages.open(url, label,
//                          { browser, contextOptions }) opens url in a NEW
//                          browser context (one per participant) and returns
//                          the page; every context is closed after the test
//                          and, on failure, every page's console (with
//                          wall-clock times) is attached. Dialogs (alert...)
//                          are dismissed and recorded: dialogsOf(page).
//                          Every page records its connection-state changes
//                          from the start: statesOf(page).
//   watch / waitWatch      measure, with the page's own clock (Date.now(),
//                          the same clock as the test's), when a selector
//                          first matches (or stops matching) after an action
//   videoStats / expectVideoDecoding / waitNewFrames
//                          getStats() of the inbound video played by given
//                          <video data-producer-id> elements
//   report(what, ms)       prints a measurement and adds it as an annotation
//   playTone / setTone     a WebAudio oscillator as the published microphone
//                          (gain 0: silence), for the active speaker tests
const { expect } = require('@playwright/test');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const show = (x) => JSON.stringify(x);

/** css quotes a string for use inside a CSS attribute selector value. */
const css = (s) => String(s).replace(/\\/g, '\\\\').replace(/"/g, '\\"');

// Selectors of the page contract.
const sel = {
  tile: (name) => `[data-testid="remote-tile"][data-participant-name="${css(name)}"]`,
  tileVideo: (name) => `${sel.tile(name)} [data-testid="remote-video"][data-producer-id]`,
  item: (name) => `[data-testid="participant-list"] [data-testid="participant-item"][data-participant-name="${css(name)}"]`,
  screenTile: (name) => `[data-testid="screen-tile"][data-participant-name="${css(name)}"]`,
  screenVideo: (name) => `${sel.screenTile(name)} [data-testid="screen-video"][data-producer-id]`,
};

/** tileOf is the remote tile of the participant called name. */
const tileOf = (page, name) => page.locator(sel.tile(name));
/** itemOf is the participant-item of name in the page's participant list. */
const itemOf = (page, name) => page.locator(sel.item(name));
/** screenTileOf is the screen-share tile of name. */
const screenTileOf = (page, name) => page.locator(sel.screenTile(name));

/** report prints a measured time (ms) or value and records it as an annotation. */
function report(testInfo, what, ms) {
  const text = `${what}: ${typeof ms === 'number' ? `${Math.round(ms)} ms` : ms}`;
  console.log(`[measure] ${testInfo.title}: ${text}`);
  testInfo.annotations.push({ type: 'measure', description: text });
}

/** expectConnected waits for the page's connection-state to read "connected". */
async function expectConnected(page, timeout = 30_000) {
  await expect(page.getByTestId('connection-state')).toHaveText('connected', { timeout });
  await expect(page.getByTestId('connection-state')).toHaveAttribute('data-state', 'connected');
}

// Runs in every page before its scripts: records the connection-state
// changes ({state, t}) in window.__e2eStates.
function recordStates() {
  window.__e2eStates = [];
  const start = () => {
    const el = document.querySelector('[data-testid="connection-state"]');
    if (!el) return;
    const rec = () => {
      const state = el.dataset.state || el.textContent.trim();
      const last = window.__e2eStates[window.__e2eStates.length - 1];
      if (!last || last.state !== state) window.__e2eStates.push({ state, t: Date.now() });
    };
    rec();
    new MutationObserver(rec).observe(el, { attributes: true, childList: true, characterData: true, subtree: true });
  };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
}

/** statesOf returns the page's connection-state changes [{state, t}]. */
const statesOf = (page) => page.evaluate(() => window.__e2eStates || []);

/** firstState returns the time of the first change to state at or after `after`, or null. */
async function firstState(page, state, after = 0) {
  const s = (await statesOf(page)).find((x) => x.state === state && x.t >= after);
  return s ? s.t : null;
}

const pageLabels = new WeakMap();
const pageDialogs = new WeakMap();

/** dialogsOf lists the dialogs (alert, confirm...) the page opened: [{type, message}]. */
const dialogsOf = (page) => pageDialogs.get(page) || [];

/**
 * PageSet opens participant pages, one browser context each, and closes
 * them; it keeps every page's console for the failure report.
 */
class PageSet {
  constructor(browser) {
    this.browser = browser;
    this.contexts = [];
    this.consoles = [];
  }

  /**
   * open opens url in a new context of `browser` (default: the test's
   * browser) with camera and microphone allowed; expects HTTP 200.
   */
  async open(url, label, { browser = this.browser, contextOptions = {} } = {}) {
    const context = await browser.newContext({ permissions: ['camera', 'microphone'], ...contextOptions });
    this.contexts.push(context);
    await context.addInitScript(recordStates);
    const page = await context.newPage();
    const log = [];
    const dialogs = [];
    this.consoles.push({ label, log });
    pageLabels.set(page, label);
    pageDialogs.set(page, dialogs);
    const stamp = () => new Date().toISOString();
    page.on('console', (m) => log.push(`${stamp()} [${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => log.push(`${stamp()} [pageerror] ${e.message}`));
    page.on('dialog', (d) => {
      dialogs.push({ type: d.type(), message: d.message() });
      log.push(`${stamp()} [dialog ${d.type()}] ${d.message()}`);
      d.dismiss().catch(() => {});
    });
    log.push(`${stamp()} [e2e] goto ${url}`);
    const res = await page.goto(url);
    expect(res && res.status(), `GET ${url} (${label})`).toBe(200);
    return page;
  }

  async attachConsoles(testInfo) {
    for (const { label, log } of this.consoles) {
      const file = testInfo.outputPath(`console-${label}.log`);
      require('node:fs').writeFileSync(file, log.join('\n'));
      await testInfo.attach(`console-${label}.log`, { path: file, contentType: 'text/plain' });
    }
  }

  async close() {
    for (const c of this.contexts) await c.close().catch(() => {});
    this.contexts = [];
  }
}

/** withPages extends a Playwright test with the `pages` fixture (a PageSet). */
function withPages(base) {
  return base.extend({
    pages: async ({ browser }, use, testInfo) => {
      const set = new PageSet(browser);
      try {
        await use(set);
      } finally {
        if (testInfo.status !== testInfo.expectedStatus) await set.attachConsoles(testInfo).catch(() => {});
        await set.close();
      }
    },
  });
}

let watchSeq = 0;

/**
 * watch starts watching page for the first moment the selector matches an
 * element (with `text`: an element whose trimmed textContent is text), or,
 * with absent, matches none. It throws if that already holds (the change
 * to measure must come after). Returns a key for waitWatch.
 */
async function watch(page, selector, { text, absent = false, what = selector } = {}) {
  const key = `w${++watchSeq}`;
  const already = await page.evaluate(({ key, selector, text, absent }) => {
    window.__e2eMarks = window.__e2eMarks || {};
    const holds = () => {
      const els = [...document.querySelectorAll(selector)];
      const hit = text === undefined ? els.length > 0 : els.some((el) => el.textContent.trim() === text);
      return absent ? !hit : hit;
    };
    if (holds()) return true;
    const obs = new MutationObserver(() => {
      if (holds()) {
        window.__e2eMarks[key] = Date.now();
        obs.disconnect();
      }
    });
    obs.observe(document.documentElement, { subtree: true, childList: true, attributes: true, characterData: true });
    return false;
  }, { key, selector, text, absent });
  if (already) {
    throw new Error(`watch on ${pageLabels.get(page) || 'page'}: "${what}" already holds before the action`);
  }
  return { page, key, what };
}

/**
 * waitWatch waits (up to timeout) until a watch fired and returns the ms
 * from t0 (a Date.now() of the test) to that moment.
 */
async function waitWatch({ page, key, what }, t0, { timeout = 20_000 } = {}) {
  try {
    await page.waitForFunction((k) => !!(window.__e2eMarks && window.__e2eMarks[k]), key, { timeout, polling: 100 });
  } catch (err) {
    throw new Error(`${pageLabels.get(page) || 'page'}: "${what}" not within ${timeout} ms (${err.message.split('\n')[0]})`);
  }
  const at = await page.evaluate((k) => window.__e2eMarks[k], key);
  return at - t0;
}

/**
 * videoStats reads the subscriber's inbound-rtp video streams played by the
 * <video data-producer-id> elements matching videoSelector: those whose
 * trackIdentifier is the element's producer id (or the id of a track of its
 * srcObject). [{producerId, statsId, trackIdentifier, framesDecoded,
 * frameWidth, frameHeight, bytesReceived}]
 */
async function videoStats(page, videoSelector) {
  return page.evaluate(async (selector) => {
    const pc = window.confab && window.confab.pcs && window.confab.pcs.subscriber;
    if (!pc) return [];
    const wanted = new Map();
    for (const el of document.querySelectorAll(selector)) {
      const pid = el.dataset.producerId;
      if (pid) wanted.set(pid, pid);
      if (el.srcObject) for (const t of el.srcObject.getVideoTracks()) wanted.set(t.id, pid);
    }
    const out = [];
    (await pc.getStats()).forEach((s) => {
      if (s.type !== 'inbound-rtp' || (s.kind || s.mediaType) !== 'video' || !wanted.has(s.trackIdentifier)) return;
      out.push({
        producerId: wanted.get(s.trackIdentifier),
        statsId: s.id,
        trackIdentifier: s.trackIdentifier,
        framesDecoded: s.framesDecoded || 0,
        frameWidth: s.frameWidth || 0,
        frameHeight: s.frameHeight || 0,
        bytesReceived: s.bytesReceived || 0,
      });
    });
    return out;
  }, videoSelector);
}

/**
 * expectVideoDecoding polls (up to timeout) until a video matched by
 * videoSelector decodes: between two getStats samples windowMs apart its
 * framesDecoded and bytesReceived rose and frameWidth > 0. Returns
 * { producerId, fps, frameWidth, frameHeight, ms } (ms: time until it held).
 */
async function expectVideoDecoding(page, videoSelector, { timeout = 20_000, windowMs = 1_000, label = videoSelector } = {}) {
  const start = Date.now();
  let last = null;
  for (;;) {
    const a = await videoStats(page, videoSelector);
    await sleep(windowMs);
    const b = await videoStats(page, videoSelector);
    last = { a, b };
    for (const s of b) {
      const p = a.find((x) => x.statsId === s.statsId);
      if (p && s.framesDecoded > p.framesDecoded && s.bytesReceived > p.bytesReceived && s.frameWidth > 0) {
        return {
          producerId: s.producerId,
          fps: Math.round(((s.framesDecoded - p.framesDecoded) * 10_000) / windowMs) / 10,
          frameWidth: s.frameWidth,
          frameHeight: s.frameHeight,
          ms: Date.now() - start,
        };
      }
    }
    if (Date.now() - start > timeout) {
      throw new Error(`${pageLabels.get(page) || 'page'}: no decoding video for ${label} within ${timeout} ms; last samples ${show(last)}`);
    }
  }
}

/** allVideoFrames maps the stats id of every inbound video stream to its framesDecoded. */
async function allVideoFrames(page) {
  return page.evaluate(async () => {
    const pc = window.confab && window.confab.pcs && window.confab.pcs.subscriber;
    const out = {};
    if (!pc) return out;
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && (s.kind || s.mediaType) === 'video') out[s.id] = s.framesDecoded || 0;
    });
    return out;
  });
}

/**
 * waitNewFrames polls in the page (every 50 ms, up to timeout) until a
 * video matched by videoSelector has decoded more frames than in baseline
 * (from allVideoFrames; a stream not in it counts from 0) and returns the
 * Date.now() of that moment, or null after timeout.
 */
async function waitNewFrames(page, videoSelector, baseline, timeout = 15_000) {
  return page.evaluate(async ({ selector, baseline, timeout }) => {
    const deadline = Date.now() + timeout;
    while (Date.now() < deadline) {
      const pc = window.confab && window.confab.pcs && window.confab.pcs.subscriber;
      const wanted = new Set();
      for (const el of document.querySelectorAll(selector)) {
        if (el.dataset.producerId) wanted.add(el.dataset.producerId);
        if (el.srcObject) for (const t of el.srcObject.getVideoTracks()) wanted.add(t.id);
      }
      if (pc && wanted.size) {
        let hit = false;
        (await pc.getStats()).forEach((s) => {
          if (s.type === 'inbound-rtp' && wanted.has(s.trackIdentifier) && (s.framesDecoded || 0) > (baseline[s.id] || 0)) hit = true;
        });
        if (hit) return Date.now();
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return null;
  }, { selector: videoSelector, baseline, timeout });
}

/**
 * liveSenders lists the kinds of the live tracks attached to the senders of
 * the page's publisher, enabled or not (no publisher: []).
 */
async function liveSenders(page) {
  return page.evaluate(() => {
    const pc = window.confab && window.confab.pcs && window.confab.pcs.publisher;
    if (!pc) return [];
    return pc.getSenders().filter((s) => s.track && s.track.readyState === 'live').map((s) => s.track.kind).sort();
  });
}

/** chatMessages lists the chat-message elements of the page in DOM order. */
async function chatMessages(page) {
  return page.evaluate(() => [...document.querySelectorAll('[data-testid="chat-message"]')].map((m) => {
    const part = (id) => {
      const el = m.querySelector(`[data-testid="${id}"]`);
      return el ? el.textContent : null;
    };
    return { id: m.dataset.messageId, from: m.dataset.from, fromText: part('chat-from'), time: part('chat-time'), text: part('chat-text') };
  }));
}

/** openChat opens the chat panel (toggle-chat) and waits until it is visible. */
async function openChat(page) {
  await expect(page.getByTestId('chat-panel')).toBeHidden();
  await page.getByTestId('toggle-chat').click();
  await expect(page.getByTestId('chat-panel')).toBeVisible({ timeout: 5_000 });
}

/** sendChat types text into chat-input and presses Enter. */
async function sendChat(page, text) {
  const input = page.getByTestId('chat-input');
  await input.fill(text);
  await input.press('Enter');
}

/**
 * waitChat polls the page's chat-message elements (up to timeout) until
 * pred(messages) holds and returns them; throws with the last list.
 */
async function waitChat(page, pred, { timeout = 10_000, what = 'chat messages' } = {}) {
  const deadline = Date.now() + timeout;
  let msgs = [];
  for (;;) {
    msgs = await chatMessages(page);
    if (pred(msgs)) return msgs;
    if (Date.now() > deadline) {
      throw new Error(`${pageLabels.get(page) || 'page'}: ${what} not within ${timeout} ms; messages: ${show(msgs.map((m) => `${m.from}:${m.text && m.text.slice(0, 40)}`))}`);
    }
    await sleep(100);
  }
}

/**
 * hideTile hides (display:none) the remote tile of name on page: the page
 * then receives no video for it (CPU on a 2-core box).
 */
async function hideTile(page, name) {
  await page.evaluate((s) => {
    const tile = document.querySelector(s);
    if (!tile) throw new Error(`no tile ${s}`);
    tile.style.display = 'none';
  }, sel.tile(name));
}

/**
 * playTone replaces the page's published microphone track by a 440 Hz
 * WebAudio oscillator behind a gain node (gain 0: silence) and returns
 * the AudioContext's state. The page must have had a user gesture.
 */
async function playTone(page, gain) {
  return page.evaluate(async (gain) => {
    const pc = window.confab.pcs.publisher;
    const sender = pc && pc.getSenders().find((s) => s.track && s.track.kind === 'audio');
    if (!sender) throw new Error('no audio sender on the publisher');
    const ctx = new AudioContext();
    const osc = ctx.createOscillator();
    osc.type = 'sine';
    osc.frequency.value = 440;
    const g = ctx.createGain();
    g.gain.value = gain;
    const dest = ctx.createMediaStreamDestination();
    osc.connect(g).connect(dest);
    osc.start();
    await ctx.resume();
    await sender.replaceTrack(dest.stream.getAudioTracks()[0]);
    window.__e2eTone = { ctx, osc, g, dest };
    return ctx.state;
  }, gain);
}

/** setTone sets the gain of the page's oscillator (playTone). */
const setTone = (page, gain) => page.evaluate((gain) => { window.__e2eTone.g.gain.value = gain; }, gain);

module.exports = {
  sleep,
  playTone,
  setTone,
  show,
  sel,
  tileOf,
  itemOf,
  screenTileOf,
  report,
  expectConnected,
  statesOf,
  firstState,
  dialogsOf,
  PageSet,
  withPages,
  watch,
  waitWatch,
  videoStats,
  expectVideoDecoding,
  allVideoFrames,
  waitNewFrames,
  liveSenders,
  chatMessages,
  openChat,
  sendChat,
  waitChat,
  hideTile,
};
