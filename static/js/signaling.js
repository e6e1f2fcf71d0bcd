// signaling.js: the confab signaling protocol (v1) over a WebSocket.
//
// Messages are JSON objects {"v":1,"type":"...", ...}; see docs/protocol.md.
// Signaling knows nothing about WebRTC: it connects, sends typed messages,
// keeps the connection alive with an application-level ping every 20 s and
// reports incoming messages and the close to its owner via callbacks.

export const PROTOCOL_VERSION = 1;
export const PING_INTERVAL_MS = 20000;

/** wsURL returns the signaling URL for room, ws: or wss: like the page. */
export function wsURL(room, loc = window.location) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${loc.host}/rooms/${encodeURIComponent(room)}/ws`;
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
    this.pingTimer = null;
  }

  /** connect opens the socket; resolves once open, rejects if it closes first. */
  connect() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      let opened = false;
      ws.addEventListener('open', () => {
        opened = true;
        this.#startPing();
        resolve();
      });
      ws.addEventListener('message', (ev) => this.#receive(ev.data));
      ws.addEventListener('close', (ev) => {
        this.#stopPing();
        if (!opened) {
          reject(new Error(`signaling: connection failed (close code ${ev.code})`));
          return;
        }
        this.onClose({ code: ev.code, reason: ev.reason });
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
    this.ws.send(JSON.stringify({ v: PROTOCOL_VERSION, type, ...fields }));
    return true;
  }

  /** close closes the socket (idempotent). onClose still fires. */
  close(code = 1000, reason = '') {
    this.#stopPing();
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) {
      this.ws.close(code, reason);
    }
  }

  #receive(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (err) {
      console.warn('signaling: dropping malformed message', err);
      return;
    }
    if (msg === null || typeof msg !== 'object' || msg.v !== PROTOCOL_VERSION) {
      console.warn('signaling: dropping message with unexpected version', msg);
      return;
    }
    this.onMessage(msg);
  }

  #startPing() {
    this.#stopPing();
    this.pingTimer = setInterval(() => this.send('ping'), PING_INTERVAL_MS);
  }

  #stopPing() {
    if (this.pingTimer !== null) {
      clearInterval(this.pingTimer);
      this.pingTimer = null;
    }
  }
}
