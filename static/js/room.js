// room.js: entry point of the room page. It wires signaling (signaling.js),
// the two peer connections (peers.js), local media (media.js) and the DOM
// (ui.js), and drives the connection state shown in the page:
//
//   connecting    until media flows (a PC is connected) for the first time
//   connected     signaling open and the publisher or subscriber PC connected
//                 (or, with nothing to send or receive yet, once joined)
//   reconnecting  signaling or ICE was lost; a new session is being set up
//   disconnected  after "Leave", or when the server refused us for good
//
// For tests it exposes window.confab = {pcs: {publisher, subscriber}, state, ...}.

import { Signaling, wsURL } from './signaling.js';
import { Publisher, Subscriber } from './peers.js';
import { getLocalMedia, describeMediaError } from './media.js';
import { RoomView } from './ui.js';

// Errors after which retrying cannot help.
const FATAL_ERRORS = new Set(['invalid-name', 'room-full', 'too-many-rooms', 'unsupported-version']);
const RECONNECT_DELAYS_MS = [500, 1000, 2000, 4000, 8000, 8000, 8000, 8000];
// Close code we use when we abandon a session ourselves (ICE failure).
const CLOSE_RESTART = 4000;

class RoomApp {
  constructor(root) {
    this.view = new RoomView(root);
    this.room = root.dataset.room;
    this.name = root.dataset.name;
    this.nodeId = root.dataset.nodeId;
    this.stream = null;
    this.signaling = null;
    this.publisher = null;
    this.subscriber = null;
    this.participantId = '';
    this.joined = false;
    this.leaving = false;
    this.fatal = false;
    this.attempt = 0;
    this.recovering = false; // lost a session; 'reconnecting' until media flows again
    this.reconnectTimer = null;
    this.state = 'connecting';
    /** producer id -> participant id, for tracks and removals */
    this.producers = new Map();
    this.debug = { pcs: { publisher: null, subscriber: null } };
    this.#expose();
  }

  #expose() {
    const app = this;
    window.confab = {
      pcs: this.debug.pcs,
      get state() { return app.state; },
      get participantId() { return app.participantId; },
      get nodeId() { return app.nodeId; },
      leave: () => app.leave(),
    };
  }

  async start() {
    this.view.setState('connecting');
    this.view.onLeave(() => this.leave());
    window.addEventListener('pagehide', () => {
      if (this.signaling) {
        this.signaling.send('leave');
      }
    });
    const { stream, error } = await getLocalMedia();
    this.stream = stream;
    this.view.setLocalStream(stream);
    if (!stream) {
      this.view.showNotice(describeMediaError(error));
    }
    if (this.leaving) {
      this.#stopLocalMedia();
      return;
    }
    this.#connect();
  }

  async #connect() {
    this.reconnectTimer = null;
    const sig = new Signaling(wsURL(this.room), {
      onMessage: (msg) => this.#handle(sig, msg),
      onClose: (ev) => this.#onClose(sig, ev),
    });
    this.signaling = sig;
    try {
      await sig.connect();
    } catch (err) {
      console.warn(err);
      if (this.signaling === sig) {
        this.#scheduleReconnect();
      }
      return;
    }
    if (this.leaving) {
      sig.close();
      return;
    }
    sig.send('join', { name: this.name });
  }

  #handle(sig, msg) {
    if (sig !== this.signaling) {
      return; // a message of an abandoned session
    }
    switch (msg.type) {
      case 'joined':
        this.#onJoined(msg);
        break;
      case 'publish-answer':
        if (this.publisher) {
          this.publisher.applyAnswer(msg.sdp).catch((err) => console.error('publisher: bad answer', err));
        }
        break;
      case 'subscriber-offer':
        this.#ensureSubscriber().handleOffer(msg.sdp);
        break;
      case 'candidate': {
        const peer = msg.target === 'publisher' ? this.publisher : this.#ensureSubscriber();
        if (peer) {
          peer.addRemoteCandidate(msg.candidate);
        }
        break;
      }
      case 'participant-joined':
        this.#addParticipant(msg.participant);
        break;
      case 'participant-left':
        if (msg.participant) {
          this.view.removeTile(msg.participant.id);
        }
        break;
      case 'producer-added':
        this.#addProducer(msg.producer);
        break;
      case 'producer-removed':
        if (msg.producer) {
          this.producers.delete(msg.producer.id);
          this.view.detachProducer(msg.producer.id);
        }
        break;
      case 'error':
        this.#onError(sig, msg);
        break;
      case 'pong':
        break;
      default:
        console.debug('signaling: ignoring message', msg.type);
    }
  }

  #onJoined(msg) {
    this.joined = true;
    this.attempt = 0;
    this.participantId = msg.participantId;
    if (msg.nodeId) {
      this.nodeId = msg.nodeId;
      this.view.setNodeID(msg.nodeId);
    }
    this.view.showError('');
    for (const p of msg.participants || []) {
      this.#addParticipant(p);
    }
    for (const p of msg.producers || []) {
      this.#addProducer(p);
    }
    this.#ensureSubscriber();
    if (this.stream) {
      const send = (type, fields) => this.signaling.send(type, fields);
      this.publisher = new Publisher(send, () => this.#updateState());
      this.debug.pcs.publisher = this.publisher.pc;
      this.publisher.start(this.stream).catch((err) => {
        console.error('publisher: cannot publish', err);
        this.view.showError(`Cannot publish your camera/microphone: ${err.message}`);
      });
    }
    this.#updateState();
  }

  #ensureSubscriber() {
    if (!this.subscriber) {
      const send = (type, fields) => this.signaling.send(type, fields);
      this.subscriber = new Subscriber(send, () => this.#updateState(), (ev) => this.#onTrack(ev));
      this.debug.pcs.subscriber = this.subscriber.pc;
    }
    return this.subscriber;
  }

  #onTrack(ev) {
    // The server sets stream id = participant id and track id = producer id.
    const stream = ev.streams[0];
    const participantId = stream ? stream.id : this.producers.get(ev.track.id);
    if (!participantId || participantId === this.participantId) {
      return;
    }
    this.view.attachTrack(participantId, ev.track);
  }

  #addParticipant(p) {
    if (!p || !p.id || p.id === this.participantId) {
      return;
    }
    this.view.ensureTile(p.id, p.name, p.remote ? p.origin : '');
  }

  #addProducer(p) {
    if (!p || !p.participantId || p.participantId === this.participantId) {
      return;
    }
    this.producers.set(p.id, p.participantId);
    this.view.ensureTile(p.participantId, p.participantName, p.remote ? p.origin : '');
  }

  #onError(sig, msg) {
    console.warn(`signaling error ${msg.code}: ${msg.message}`);
    if (FATAL_ERRORS.has(msg.code) && !this.joined) {
      this.fatal = true;
      this.view.showError(`Cannot join: ${msg.message || msg.code}`);
      sig.close(1000, 'giving up');
      return;
    }
    if (msg.code === 'invalid-sdp') {
      this.view.showError(`Media negotiation failed: ${msg.message || msg.code}`);
    }
  }

  #onClose(sig, ev) {
    if (sig !== this.signaling) {
      return;
    }
    this.#teardownSession();
    if (this.leaving || this.fatal) {
      this.#setState('disconnected');
      return;
    }
    console.info(`signaling closed (${ev.code} ${ev.reason}); reconnecting`);
    this.#scheduleReconnect();
  }

  #scheduleReconnect() {
    if (this.leaving || this.fatal || this.reconnectTimer !== null) {
      return;
    }
    if (this.attempt >= RECONNECT_DELAYS_MS.length) {
      this.view.showError('Lost the connection to the server.');
      this.#setState('disconnected');
      return;
    }
    const delay = RECONNECT_DELAYS_MS[this.attempt];
    this.attempt += 1;
    this.recovering = true;
    this.#setState('reconnecting');
    this.reconnectTimer = setTimeout(() => this.#connect(), delay);
  }

  /** teardownSession drops everything tied to one signaling session. */
  #teardownSession() {
    this.joined = false;
    this.participantId = '';
    if (this.publisher) {
      this.publisher.close();
      this.publisher = null;
    }
    if (this.subscriber) {
      this.subscriber.close();
      this.subscriber = null;
    }
    this.producers.clear();
    this.view.clearTiles();
  }

  leave() {
    if (this.leaving) {
      return;
    }
    this.leaving = true;
    if (this.reconnectTimer !== null) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = null;
    }
    const sig = this.signaling;
    if (sig) {
      // The server closes the socket after "leave"; close it ourselves too in
      // case the server is unreachable.
      sig.send('leave');
      setTimeout(() => sig.close(1000, 'left'), 1000);
    }
    this.#teardownSession();
    this.#stopLocalMedia();
    this.view.showNotice('');
    this.view.showLeft(`${window.location.pathname}${window.location.search}`);
    this.#setState('disconnected');
  }

  #stopLocalMedia() {
    if (this.stream) {
      for (const t of this.stream.getTracks()) {
        t.stop();
      }
    }
  }

  #updateState() {
    if (this.leaving || this.fatal) {
      this.#setState('disconnected');
      return;
    }
    const peers = [this.publisher, this.subscriber].filter((p) => p !== null);
    if (peers.some((p) => p.failed)) {
      // The server notices too and drops us; start over right away.
      if (this.signaling) {
        this.signaling.close(CLOSE_RESTART, 'ice failed');
      }
      return;
    }
    const waiting = this.recovering ? 'reconnecting' : 'connecting';
    if (!this.joined || !this.signaling || !this.signaling.open) {
      this.#setState(waiting);
      return;
    }
    if (peers.some((p) => p.connected)) {
      this.recovering = false;
      this.#setState('connected');
      return;
    }
    if (peers.some((p) => p.interrupted)) {
      this.#setState('reconnecting');
      return;
    }
    // Joined with nothing to send and nothing offered yet: no media can
    // flow, but the session is fully up.
    const idle = this.publisher === null && (this.subscriber === null || !this.subscriber.negotiated);
    if (idle) {
      this.recovering = false;
    }
    this.#setState(idle ? 'connected' : waiting);
  }

  #setState(state) {
    this.state = state;
    this.view.setState(state);
  }
}

const root = document.getElementById('room');
if (root) {
  new RoomApp(root).start();
}
