// tiles.js: tells the server how each remote video is shown, with
// "video-settings" (protocol version 2, see docs/protocol.md), so that it
// sends every subscriber the simulcast layer its tile needs and nothing for
// a tile nobody can see.
//
// For every remote video producer the page knows the element that shows
// it (the <video> of its participant's tile). Its state is
//   width, height  clientWidth/clientHeight x devicePixelRatio, rounded
//                  (0 x 0 while the element is not displayed)
//   visible        the element is displayed (connected, not display:none or
//                  visibility:hidden — a video that is transparent until
//                  frames arrive still counts), on screen
//                  (IntersectionObserver) and the page is visible
//                  (document.visibilityState)
// ResizeObserver, IntersectionObserver, visibilitychange and window resize
// (zoom, devicePixelRatio) trigger a report. Reports are debounced
// (REPORT_DELAY_MS after the last trigger, at most REPORT_MAX_DELAY_MS after
// the first) and list only the producers whose state changed since it was
// last sent: visibility, or a size change of at least SIZE_STEP in either
// dimension. A tile that was reported hidden and is visible again is
// reported at once (no debounce: its first frame waits for this report).
// A new producer and a new session get a full report (every producer).

export const REPORT_DELAY_MS = 150;
export const REPORT_MAX_DELAY_MS = 1000;
/** Size changes smaller than this fraction are not reported. */
export const SIZE_STEP = 0.1;
/** Entries per "video-settings" message (the server's limit). */
export const MAX_ENTRIES = 64;
/** The server's bound on width and height. */
const MAX_DIMENSION = 16384;

/** sizeChanged: b differs from a by at least SIZE_STEP (any change from or to 0). */
function sizeChanged(a, b) {
  if (a === 0 || b === 0) {
    return a !== b;
  }
  return Math.abs(b - a) >= SIZE_STEP * a;
}

function devicePixels(cssPixels) {
  const px = Math.round(cssPixels * (window.devicePixelRatio || 1));
  return Math.min(Math.max(px, 0), MAX_DIMENSION);
}

export class TileReporter {
  constructor() {
    /** @type {Map<string, HTMLElement>} producer id -> element showing it */
    this.tiles = new Map();
    /** @type {Map<string, {width: number, height: number, visible: boolean}>} last sent, by producer id */
    this.sent = new Map();
    /** @type {WeakMap<Element, boolean>} what IntersectionObserver last said */
    this.onScreen = new WeakMap();
    /** @type {((settings: object[]) => boolean)|null} sends one message; null: reporting is off */
    this.sendFn = null;
    this.full = false;
    this.timer = null;
    this.firstTrigger = 0;

    const schedule = () => this.schedule();
    this.resizeObserver = typeof ResizeObserver === 'function' ? new ResizeObserver(schedule) : null;
    this.intersectionObserver = typeof IntersectionObserver === 'function'
      ? new IntersectionObserver((entries) => {
        for (const e of entries) {
          this.onScreen.set(e.target, e.isIntersecting);
        }
        schedule();
      })
      : null;
    document.addEventListener('visibilitychange', schedule);
    window.addEventListener('resize', schedule);
  }

  /**
   * connect starts reporting through send (one "video-settings" message
   * per call, returning false when it could not be sent) with a full report;
   * null stops reporting.
   */
  connect(send) {
    this.sendFn = send;
    this.sent.clear();
    this.full = true;
    this.schedule();
  }

  /** track reports producerId as shown by el (a new producer: full report). */
  track(producerId, el) {
    if (!producerId || !el) {
      return;
    }
    const old = this.tiles.get(producerId);
    if (old === el) {
      return;
    }
    this.tiles.set(producerId, el);
    if (old) {
      this.#release(old);
    }
    this.resizeObserver?.observe(el);
    this.intersectionObserver?.observe(el);
    this.full = true;
    this.schedule();
  }

  /** untrack forgets a producer (removed: the server forgets it too). */
  untrack(producerId) {
    const el = this.tiles.get(producerId);
    if (!el) {
      return;
    }
    this.tiles.delete(producerId);
    this.sent.delete(producerId);
    this.#release(el);
  }

  /** clear forgets every producer and stops reporting (session over). */
  clear() {
    for (const id of Array.from(this.tiles.keys())) {
      this.untrack(id);
    }
    this.sent.clear();
    this.sendFn = null;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  /** lastSent lists what the server was last told, for tests. */
  lastSent() {
    return Array.from(this.sent, ([producerId, s]) => ({ producerId, ...s }));
  }

  /** schedule asks for a report after the debounce delay. */
  schedule() {
    if (!this.sendFn || this.tiles.size === 0) {
      return;
    }
    const now = performance.now();
    if (this.timer === null) {
      this.firstTrigger = now;
    } else {
      clearTimeout(this.timer);
    }
    const delay = this.#revealed() ? 0
      : Math.max(0, Math.min(REPORT_DELAY_MS, this.firstTrigger + REPORT_MAX_DELAY_MS - now));
    this.timer = setTimeout(() => {
      this.timer = null;
      this.#report();
    }, delay);
  }

  /** #revealed: a tile last reported hidden is visible now. */
  #revealed() {
    for (const [producerId, el] of this.tiles) {
      const last = this.sent.get(producerId);
      if (last && !last.visible && this.measure(el).visible) {
        return true;
      }
    }
    return false;
  }

  /** measure is the current state of the element showing a producer. */
  measure(el) {
    const displayed = el.isConnected && el.getClientRects().length > 0 &&
      getComputedStyle(el).visibility !== 'hidden';
    if (!displayed) {
      return { width: 0, height: 0, visible: false };
    }
    return {
      width: devicePixels(el.clientWidth),
      height: devicePixels(el.clientHeight),
      visible: document.visibilityState === 'visible' && this.onScreen.get(el) !== false,
    };
  }

  #report() {
    if (!this.sendFn) {
      return;
    }
    const changes = [];
    for (const [producerId, el] of this.tiles) {
      const now = this.measure(el);
      const last = this.sent.get(producerId);
      if (this.full || !last || last.visible !== now.visible ||
          sizeChanged(last.width, now.width) || sizeChanged(last.height, now.height)) {
        changes.push({ producerId, ...now });
      }
    }
    this.full = false;
    for (let i = 0; i < changes.length; i += MAX_ENTRIES) {
      const chunk = changes.slice(i, i + MAX_ENTRIES);
      if (!this.sendFn(chunk)) {
        this.full = true; // try everything again on the next trigger
        return;
      }
      for (const { producerId, width, height, visible } of chunk) {
        this.sent.set(producerId, { width, height, visible });
      }
    }
  }

  /** #release stops observing el unless it still shows another producer. */
  #release(el) {
    for (const other of this.tiles.values()) {
      if (other === el) {
        return;
      }
    }
    this.resizeObserver?.unobserve(el);
    this.intersectionObserver?.unobserve(el);
    this.onScreen.delete(el);
  }
}
