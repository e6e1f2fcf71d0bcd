// signaling.js: the confab signaling protocol over a WebSocket.
//
// Messages are JSON objects {"v":4,"type":"...", ...}; see docs/protocol.md.
// A session speaks the version of its join: PROTOCOL_VERSION unless the
// owner lowers `version` (one step at a time, for an older node)
// before joining again. Messages of any supported version are passed on,
// so that such a node's "unsupported-version" error reaches the owner.
// Signaling knows nothing about WebRTC: it connects, sends typed messages,
// keeps the connection alive with an application-level ping every 10 s and
// reports incoming messages and the close to its owner via callbacks. A
// server that stays silent for DEAD_AFTER_MS (no pong, nothing) counts as
// gone: the socket is closed and onClose fires, as when the TCP connection
// breaks.

export const PROTOCOL_VERSION = 4;
/** Versions of server messages that are passed on. */
export const SUPPORTED_VERSIONS = Object.freeze([1, 2, 3, 4]);
export const PING_INTERVAL_MS = 10000;
export const DEAD_AFTER_MS = 25000;
export const CONNECT_TIMEOUT_MS = 10000;
/** Close code used when the server stopped answering. */
export const CLOSE_UNRESPONSIVE = 4001;

/**
 * wsURL returns the signaling URL of room on the node whose base URL is
 * base (e.g. "http://127.0.0.1:8082"; default: the page's own origin):
 * ws: for http, wss: for https.
 */
export function wsURL(room, base = window.location.origin) {
  const u = new URL(base, window.location.href);
  const scheme = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${u.host}/rooms/${encodeURIComponent(room)}/ws`;
}

export class Signaling {
  /**
   * @param {string} url WebSocket URL (see wsURL).
   * @param {{onMessage: (msg: object) => void, onClose: (ev: {code: number, reason: string}) => void}} handlers
   */
  constructor(url, { onMessage, onClose }) {
    this.url = url;
    this.onMessage = onMessage;
    this.onClose = onClose;
    this.ws = null;
    /** protocol version of every message sent */
    this.version = PROTOCOL_VERSION;
    this.pingTimer = null;
    this.lastHeard = 0;
    this.ended = false; // onClose was called
  }

  /**
   * connect opens the socket; resolves once open, rejects if it closes (or
   * is blocked, or takes longer than CONNECT_TIMEOUT_MS) first.
   */
  connect() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url); // may throw (e.g. blocked by CSP): rejects
      this.ws = ws;
      let opened = false;
      const timeout = setTimeout(() => {
        if (!opened) {
          ws.close();
        }
      }, CONNECT_TIMEOUT_MS);
      ws.addEventListener('open', () => {
        opened = true;
        clearTimeout(timeout);
        this.lastHeard = Date.now();
        this.#startPing();
        resolve();
      });
      ws.addEventListener('message', (ev) => {
        this.lastHeard = Date.now();
        this.#receive(ev.data);
      });
      ws.addEventListener('close', (ev) => {
        clearTimeout(timeout);
        this.#stopPing();
        if (!opened) {
          reject(new Error(`signaling: connection to ${this.url} failed (close code ${ev.code})`));
          return;
        }
        this.#end({ code: ev.code, reason: ev.reason });
      });
      // 'error' is always followed by 'close'; nothing to do here.
      ws.addEventListener('error', () => {});
    });
  }

  /** open reports whether messages can be sent. */
  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  /** send sends one message; returns false when the socket is not open. */
  send(type, fields = {}) {
    if (!this.open) {
      return false;
    }
    this.ws.send(JSON.stringify({ v: this.version, type, ...fields }));
    return true;
  }

  /** close closes the socket (idempotent). onClose still fires. */
  close(code = 1000, reason = '') {
    this.#stopPing();
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) {
      this.ws.close(code, reason);
    }
  }

  /** #end reports the end of an opened connection, once. */
  #end(ev) {
    if (this.ended) {
      return;
    }
    this.ended = true;
    this.onClose(ev);
  }

  #receive(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (err) {
      console.warn('signaling: dropping malformed message', err);
      return;
    }
    if (msg === null || typeof msg !== 'object' || !SUPPORTED_VERSIONS.includes(msg.v)) {
      console.warn('signaling: dropping message with unexpected version', msg);
      return;
    }
    this.onMessage(msg);
  }

  #startPing() {
    this.#stopPing();
    this.pingTimer = setInterval(() => {
      if (Date.now() - this.lastHeard > DEAD_AFTER_MS) {
        console.warn(`signaling: no answer from ${this.url} for ${DEAD_AFTER_MS} ms; giving up on it`);
        // Do not wait for a close handshake the server will not answer.
        this.close(CLOSE_UNRESPONSIVE, 'unresponsive');
        this.#end({ code: CLOSE_UNRESPONSIVE, reason: 'unresponsive' });
        return;
      }
      this.send('ping');
    }, PING_INTERVAL_MS);
  }

  #stopPing() {
    if (this.pingTimer !== null) {
      clearInterval(this.pingTimer);
      this.pingTimer = null;
    }
  }
}
