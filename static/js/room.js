// room.js: entry point of the room page. It wires signaling (signaling.js),
// the two peer connections (peers.js), local media (media.js) and the DOM
// (ui.js), and drives the connection state shown in the page:
//
//   connecting    until media flows (a PC is connected) for the first time
//   connected     signaling open and the publisher or subscriber PC connected
//                 (or, with nothing to send or receive yet, once joined)
//   reconnecting  the session was lost (node gone, network, ICE failure) or
//                 the node asked us to move; a new one is being set up
//   disconnected  after "Leave", or when the server refused us for good
//
// Placement: the node may answer "join" with "move" (reason "placement" or
// "node-full") instead of "joined": the room belongs on another node. The
// page goes there at once and joins with "placed" naming that node, so it
// is not sent on again (at most MAX_PLACEMENT_HOPS moves, then backoff).
//
// Failover: the page remembers the cluster's nodes (the "nodes" of "joined"
// and "move", with their load). When its session is lost it rejoins the same
// room with the same name on another node (chosen by load with random
// jitter, so the clients of a lost node spread; a node that just failed is
// tried again only when no other is left, a draining node only when nothing
// else is known), telling it which nodes to avoid, with backoff between
// attempts, and never gives up while the page is open, except after
// "Leave". Local media is kept; remote tiles are cleared and come back with
// the new session.
//
// Protocol versions (docs/protocol.md): the page joins with the newest
// version it speaks and steps down one version on "unsupported-version"
// (same socket), losing what the older one lacks:
//   4 reach: "joined" carries TURN servers with this participant's
//     credentials ("iceServers"), used by both peer connections of the
//     session (a version 3 or older node gives none: host candidates only);
//   3 meeting: tiles and people list for everyone with their mute and
//     speaking state ("participant-updated", our own with "media-state",
//     local.js), screen shares as "screen" producers in a spotlight, chat
//     kept by id across sessions (panels.js);
//   2 adaptive video: the camera is simulcast when enabled
//     (SIMULCAST_DEFAULT in nodes.js, or ?simulcast=1 / 0; layers in
//     media.js), "encodings" switch its layers (Publisher.setEncodings) and
//     the size and visibility of remote video tiles are reported with
//     "video-settings" (tiles.js).
//
// For tests it exposes window.confab = {pcs: {publisher, subscriber}, state,
// participantId, nodeId, nodes, protocolVersion, simulcast, mediaState,
// encodings(), videoSettings(), firstFrames(), chat(), participants(),
// leave} (see docs/protocol.md, The room page for tests).

import { Signaling, wsURL } from './signaling.js';
import { Publisher, Subscriber } from './peers.js';
import { describeMediaError, listDevices } from './media.js';
import { LocalMedia } from './local.js';
import { Chat, Panels, PeopleList, Settings } from './panels.js';
import { TileReporter } from './tiles.js';
import { RoomView } from './ui.js';
import { NodeSet, offSetting, simulcastSetting } from './nodes.js';
import { AdminControls } from './admin.js';

// Errors after which retrying cannot help.
const FATAL_ERRORS = new Set(['invalid-name', 'unsupported-version',
  'token-required', 'token-invalid', 'token-expired', 'token-wrong-room', 'room-locked', 'room-ended']);

// Errors that end a joined session for good (no rejoin).
const ENDING_ERRORS = new Set(['replaced', 'removed', 'room-ended']);

// Grants of a session without a token (version 3 and older, open nodes).
const ALL_GRANTS = { publish: true, sources: ['camera', 'microphone', 'screen'], subscribe: true, chat: true, hidden: false, admin: false };
// Limits of one node: fatal for the very first join (nothing else is known
// yet), otherwise the next node is tried.
const NODE_LIMIT_ERRORS = new Set(['room-full', 'too-many-rooms', 'node-full']);
// Reasons of a "move" sent instead of "joined" (placement).
const PLACEMENT_MOVES = new Set(['placement', 'node-full']);
// Placement moves followed in a row before backing off.
const MAX_PLACEMENT_HOPS = 3;
// Delays between reconnection attempts; the last one repeats forever.
const BACKOFF_MS = [500, 1000, 2000, 4000, 5000];
// How long every peer connection may stay interrupted (ICE disconnected)
// before the session is given up and set up anew, possibly elsewhere.
const INTERRUPTED_MS = 10000;
// After this many failed attempts in a row the page says it is retrying.
const NOTICE_AFTER_ATTEMPTS = 3;
// How long the page waits for the camera and microphone before joining
// without them (they are sent once open).
const ACQUIRE_WAIT_MS = 8000;
// Close code we use when we abandon a session ourselves.
const CLOSE_RESTART = 4000;

class RoomApp {
  constructor(root) {
    this.view = new RoomView(root);
    this.room = root.dataset.room;
    this.name = root.dataset.name;
    /** access token of the room link (token auth), sent with every join */
    this.token = new URLSearchParams(window.location.search).get('token') || '';
    this.nodeId = root.dataset.nodeId;
    this.local = new LocalMedia({
      audioOff: offSetting('mic'),
      videoOff: offSetting('camera'),
      onChange: (st) => this.#onLocalChange(st),
    });
    this.local.onScreen = (track) => {
      if (track) {
        this.view.attachScreen('local', '', this.name, track);
      } else {
        this.view.removeScreen('local');
      }
    };
    /** @type {Map<string, object>} participant id -> ParticipantInfo of the others */
    this.people = new Map();
    this.peopleList = new PeopleList(root);
    this.panels = new Panels(root, { onChatOpen: () => this.chat.read() });
    this.chat = new Chat(root, {
      onSend: (text) => this.#sendChat(text),
      isOpen: () => this.panels.chatOpen,
    });
    this.settings = new Settings(root, {
      listDevices,
      current: () => this.local.current(),
      onPick: (kind, id) => this.local.pickDevice(kind, id),
    });
    /** producer id -> source, for screen shares */
    this.sources = new Map();
    this.signaling = null;
    this.publisher = null;
    this.subscriber = null;
    this.participantId = '';
    /** the TURN servers of the current session's node ("joined", version 4) */
    this.iceServers = [];
    this.joined = false;
    this.everJoined = false;
    this.leaving = false;
    this.fatal = false;
    this.attempt = 0; // failed attempts since media last flowed
    this.recovering = false; // lost a session; 'reconnecting' until media flows again
    this.reconnectTimer = null;
    this.interruptedTimer = null;
    this.state = 'connecting';
    /** producer id -> participant id, for tracks and removals */
    this.producers = new Map();
    // producer id -> {trackMs, frameMs}: when its video track arrived and
    // when its element presented the first frame after that (tests).
    this.firstFrames = new Map();
    /** reports remote video tiles ("video-settings") in version 2 sessions */
    this.tileReport = new TileReporter();
    this.simulcast = simulcastSetting();
    this.joinRequest = null; // fields of the current session's join

    // The node that served the page is reachable at the page's origin.
    this.nodes = new NodeSet({ id: root.dataset.nodeId, url: window.location.origin });
    /** @type {{id: string, url: string}|null} node of the current session */
    this.node = null;
    this.placementHops = 0; // placement moves followed since the last join

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
      get nodes() { return app.nodes.copy(); },
      get protocolVersion() { return app.signaling ? app.signaling.version : 0; },
      get simulcast() { return app.simulcast; },
      get mediaState() {
        const st = app.local.state();
        return { audioMuted: st.audioMuted, videoMuted: st.videoMuted, sharing: st.sharing };
      },
      chat: () => app.chat.list(),
      participants: () => app.#participants(),
      encodings: () => (app.publisher ? app.publisher.encodings() : []),
      videoSettings: () => app.tileReport.lastSent(),
      firstFrames: () => Array.from(app.firstFrames, ([producerId, f]) => ({ producerId, ...f })),
      leave: () => app.leave(),
    };
  }

  async start() {
    this.view.setState('connecting');
    this.view.onLeave(() => this.leave());
    this.#wireControls();
    this.#updatePeople();
    window.addEventListener('pagehide', () => {
      if (this.signaling) {
        this.signaling.send('leave');
      }
    });
    // The devices may take long to open (another page just released
    // them, a permission prompt): after ACQUIRE_WAIT_MS the page joins
    // without them and sends them once they are open.
    const acquired = this.local.acquire();
    const late = Symbol('late');
    const error = await Promise.race([acquired, new Promise((r) => setTimeout(() => r(late), ACQUIRE_WAIT_MS))]);
    if (error === late) {
      this.view.showNotice('Waiting for the camera and microphone…');
      acquired.then((err) => {
        this.view.showNotice(err && !this.local.audio && !this.local.video ? describeMediaError(err) : '');
        if (this.leaving) {
          this.#stopLocalMedia();
          return;
        }
        this.local.adopt().catch((e) => console.warn('cannot send the camera/microphone', e));
      });
    } else if (error && !this.local.audio && !this.local.video) {
      this.view.showNotice(describeMediaError(error));
    }
    this.view.setLocalVideo(this.local.video);
    this.view.setControls(this.local.state());
    if (this.leaving) {
      this.#stopLocalMedia();
      return;
    }
    this.#connect();
  }

  #wireControls() {
    const run = (what, fn) => () => fn().catch((err) => {
      console.warn(`${what} failed`, err);
      this.view.showError(`${what} failed: ${err.message || err.name}`);
    });
    this.view.audioBtn.addEventListener('click', run('Microphone', () => this.local.toggleAudio()));
    this.view.videoBtn.addEventListener('click', run('Camera', () => this.local.toggleVideo()));
    this.view.shareBtn.addEventListener('click', () => {
      this.local.toggleShare().catch((err) => {
        if (err && err.name === 'NotAllowedError') {
          return; // the user cancelled the browser's picker
        }
        console.warn('screen share failed', err);
        this.view.showError(`Screen share failed: ${err.message || err.name}`);
      });
    });
    this.view.root.querySelector('[data-testid="invite"]').addEventListener('click', () => this.#invite());
    this.admin = new AdminControls({
      root: this.view.root,
      peopleList: this.peopleList,
      local: this.local,
      notice: (text, ms) => this.view.showNotice(text, ms),
      send: (fields) => (this.joined && this.signaling ? this.signaling.send('moderate', fields) : false),
    });
  }

  /** #invite copies the room link (without our name) to the clipboard. */
  async #invite() {
    const link = `${window.location.origin}/rooms/${encodeURIComponent(this.room)}`;
    try {
      await navigator.clipboard.writeText(link);
      this.view.showNotice(`Room link copied: ${link}`, 4000);
    } catch {
      this.view.showNotice(`Share this link: ${link}`, 10000);
    }
  }

  /** #onLocalChange shows our media state and tells the room. */
  #onLocalChange(st) {
    this.view.setControls(st);
    this.view.setLocalVideo(st.videoMuted ? null : this.local.video);
    this.#updatePeople();
    if (this.joined && this.signaling && this.signaling.version >= 3) {
      this.signaling.send('media-state', { audioMuted: st.audioMuted, videoMuted: st.videoMuted });
    }
  }

  #sendChat(text) {
    if (!this.joined || !this.signaling || this.signaling.version < 3) {
      return false;
    }
    return this.signaling.send('chat', { text }) !== false;
  }

  /** #updatePeople refreshes our own entry and the count. */
  #updatePeople() {
    const st = this.local.state();
    this.peopleList.set({ id: this.participantId, name: this.name, self: true, audioMuted: st.audioMuted, videoMuted: st.videoMuted, node: this.nodeId });
    this.view.setCount(this.people.size + 1);
  }

  #participants() {
    const st = this.local.state();
    const out = [{ id: this.participantId, name: this.name, audioMuted: st.audioMuted, videoMuted: st.videoMuted, speaking: false, self: true }];
    for (const p of this.people.values()) {
      out.push({ id: p.id, name: p.name, audioMuted: !!p.audioMuted, videoMuted: !!p.videoMuted, speaking: !!p.speaking, self: false });
    }
    return out;
  }

  /**
   * #connect opens a session on the next node (the one placement named, if
   * any, else one by load: NodeSet.next) and joins the room.
   */
  async #connect() {
    this.reconnectTimer = null;
    if (this.leaving || this.fatal) {
      return;
    }
    const { node, placed } = this.nodes.next();
    this.node = node;
    const sig = new Signaling(wsURL(this.room, node.url), {
      onMessage: (msg) => this.#handle(sig, msg),
      onClose: (ev) => this.#onClose(sig, ev),
    });
    this.signaling = sig;
    try {
      await sig.connect();
    } catch (err) {
      console.warn(err);
      if (this.signaling === sig) {
        this.#lose(`cannot connect to node ${node.id}`);
      }
      return;
    }
    if (this.signaling !== sig || this.leaving) {
      sig.close(); // abandoned (left) while connecting
      return;
    }
    const st = this.local.state();
    const join = { name: this.name, audioMuted: st.audioMuted, videoMuted: st.videoMuted };
    if (this.token) {
      join.token = this.token; // version 4; older nodes ignore it
    }
    if (placed) {
      join.placed = node.id;
    }
    const avoid = this.nodes.avoid(node.id);
    if (avoid.length > 0) {
      join.avoid = avoid;
    }
    this.joinRequest = join;
    sig.send('join', join);
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
          for (const [producerId, participantId] of this.producers) {
            if (participantId === msg.participant.id) {
              this.producers.delete(producerId);
              this.sources.delete(producerId);
              this.tileReport.untrack(producerId);
              this.view.removeScreen(producerId);
            }
          }
          this.view.removeTile(msg.participant.id);
          this.people.delete(msg.participant.id);
          this.peopleList.remove(msg.participant.id);
          this.#updatePeople();
        }
        break;
      case 'participant-updated':
        this.#addParticipant(msg.participant);
        break;
      case 'moderated':
        this.admin.onModerated(msg.moderation);
        break;
      case 'chat':
        if (msg.chat) {
          this.chat.add(msg.chat, msg.chat.from === this.participantId);
        }
        break;
      case 'producer-added':
        this.#addProducer(msg.producer);
        break;
      case 'producer-removed':
        if (msg.producer) {
          this.producers.delete(msg.producer.id);
          this.sources.delete(msg.producer.id);
          this.tileReport.untrack(msg.producer.id);
          this.view.detachProducer(msg.producer.id);
        }
        break;
      case 'encodings':
        if (this.publisher) {
          this.publisher.setEncodings(msg);
        }
        break;
      case 'move':
        if (!this.joined && PLACEMENT_MOVES.has(msg.reason)) {
          this.#onPlacement(sig, msg);
        } else {
          this.#onMove(msg);
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
    this.everJoined = true;
    this.placementHops = 0;
    this.participantId = msg.participantId;
    if (msg.nodeId) {
      this.nodeId = msg.nodeId;
      this.view.setNodeID(msg.nodeId);
    }
    this.nodes.joined(msg.nodeId);
    this.nodes.set(msg.nodes);
    this.view.showError('');
    this.view.showNotice('');
    const sig = this.signaling;
    const v2 = sig.version >= 2;
    const v3 = sig.version >= 3;
    this.iceServers = sig.version >= 4 && Array.isArray(msg.iceServers) ? msg.iceServers : [];
    if (!v3) {
      this.view.showNotice(`Node ${this.nodeId} runs an older confab (protocol version ${sig.version}): chat, mute indicators and screen share are not available.`);
    }
    this.grants = msg.grants || ALL_GRANTS;
    const g = this.grants;
    this.admin.start(!!g.admin, !!msg.locked);
    this.chat.setEnabled(v3 && g.chat, g.chat ? 'Chat is not available on this node' : 'Your access does not include chat');
    for (const m of msg.chat || []) {
      this.chat.add(m, false);
    }
    for (const p of msg.participants || []) {
      this.#addParticipant(p);
    }
    for (const p of msg.producers || []) {
      this.#addProducer(p);
    }
    this.#updatePeople();
    this.tileReport.connect(v2 ? (settings) => sig.send('video-settings', { settings }) : null);
    this.#ensureSubscriber();
    const send = (type, fields) => sig.send(type, fields);
    const can = (s) => g.publish && (g.sources || []).includes(s);
    this.local.allow({ microphone: can('microphone'), camera: can('camera'), screen: can('screen') });
    if (!g.publish) {
      this.#updateState();
      return; // a viewer: nothing to send
    }
    this.publisher = new Publisher(send, () => this.#updateState(), this.iceServers);
    this.debug.pcs.publisher = this.publisher.pc;
    this.local.publish(this.publisher, { simulcast: this.simulcast && v2, sources: v3 }).catch((err) => {
      if (this.signaling === sig) {
        console.error('publisher: cannot publish', err);
        this.view.showError(`Cannot publish your camera/microphone: ${err.message}`);
      }
    });
    this.#updateState();
  }

  #ensureSubscriber() {
    if (!this.subscriber) {
      const sig = this.signaling;
      const send = (type, fields) => sig.send(type, fields);
      this.subscriber = new Subscriber(send, () => this.#updateState(), (ev) => this.#onTrack(ev), this.iceServers);
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
    if (!this.people.has(participantId)) {
      // Its participant left while the offer carrying the track was on
      // its way: no tile for a ghost.
      return;
    }
    if (this.sources.get(ev.track.id) === 'screen') {
      const p = this.people.get(participantId);
      const video = this.view.attachScreen(ev.track.id, participantId, p ? p.name : '', ev.track);
      this.tileReport.track(ev.track.id, video);
      this.#timeFirstFrame(ev.track.id, video);
      return;
    }
    const el = this.view.attachTrack(participantId, ev.track);
    if (ev.track.kind === 'video') {
      this.tileReport.track(ev.track.id, el);
      this.#timeFirstFrame(ev.track.id, el);
    }
  }

  /** #timeFirstFrame records when el presents the first frame of producerId's new track. */
  #timeFirstFrame(producerId, el) {
    const f = { trackMs: performance.now(), frameMs: null };
    this.firstFrames.set(producerId, f);
    if (typeof el.requestVideoFrameCallback === 'function') {
      el.requestVideoFrameCallback(() => { f.frameMs = performance.now(); });
    }
  }

  #addParticipant(p) {
    if (!p || !p.id || p.id === this.participantId) {
      return;
    }
    const known = this.people.get(p.id);
    // The state fields are omitted when false.
    const info = { ...(known || {}), ...p, audioMuted: !!p.audioMuted, videoMuted: !!p.videoMuted, speaking: !!p.speaking };
    this.people.set(p.id, info);
    this.view.ensureTile(p.id, p.name, p.remote ? p.origin : '');
    this.view.setParticipantState(p.id, info);
    this.peopleList.set({ ...info, self: false, node: p.origin });
    if (!known) {
      this.#updatePeople();
    }
  }

  #addProducer(p) {
    if (!p || !p.participantId || p.participantId === this.participantId) {
      return;
    }
    this.producers.set(p.id, p.participantId);
    if (!this.people.has(p.participantId)) {
      this.#addParticipant({ id: p.participantId, name: p.participantName, origin: p.origin, remote: p.remote });
    }
    if (p.source === 'screen') {
      this.sources.set(p.id, 'screen');
      const video = this.view.ensureScreen(p.id, p.participantId, p.participantName);
      this.tileReport.track(p.id, video);
      return;
    }
    this.view.ensureTile(p.participantId, p.participantName, p.remote ? p.origin : '');
    if (p.kind === 'video') {
      // Reported before its track arrives: the server keeps the settings.
      this.tileReport.track(p.id, this.view.videoOf(p.participantId));
    }
  }

  /**
   * #onPlacement: the join was answered with "move" instead of "joined":
   * the room belongs on the named node. Go there at once (no backoff, not
   * counted as a failure) and join with "placed"; after MAX_PLACEMENT_HOPS
   * moves in a row, back off as after a failure.
   */
  #onPlacement(sig, msg) {
    if (this.placementHops >= MAX_PLACEMENT_HOPS) {
      this.placementHops = 0;
      this.#lose(`placement moved us ${MAX_PLACEMENT_HOPS} times`);
      return;
    }
    const target = this.nodes.place(msg.nodes);
    console.info(`node ${this.node ? this.node.id : '?'} places us on ${target ? target.id : '?'} (${msg.reason})`);
    if (!target) {
      this.placementHops = 0;
      this.#lose('placement named no usable node');
      return;
    }
    this.placementHops += 1;
    this.signaling = null; // its events are ignored from now on
    sig.close(1000, 'placed elsewhere');
    this.#connect();
  }

  /** #onMove: the node is draining; rejoin elsewhere right away. */
  #onMove(msg) {
    console.info(`node ${this.nodeId} asks us to move (${msg.reason || 'no reason'})`);
    if (this.node) {
      this.nodes.draining.add(this.node.id);
    }
    this.nodes.set(msg.nodes);
    this.#lose('moving to another node', { polite: true, immediate: true });
  }

  #onError(sig, msg) {
    console.warn(`signaling error ${msg.code}: ${msg.message}`);
    if (ENDING_ERRORS.has(msg.code)) {
      this.fatal = true;
      this.#clearTimers();
      this.view.showError(msg.message || msg.code);
      this.signaling = null;
      sig.close(1000, 'ended');
      this.#teardownSession();
      this.#setState('disconnected');
      return;
    }
    if (this.joined && msg.code === 'forbidden') {
      this.view.showError(msg.message || msg.code);
      return;
    }
    if (this.joined && msg.code && msg.code.startsWith('chat-')) {
      this.chat.showError(msg.message || msg.code);
      return;
    }
    if (this.joined) {
      if (msg.code === 'invalid-sdp') {
        this.view.showError(`Media negotiation failed: ${msg.message || msg.code}`);
      }
      return;
    }
    // The join was refused.
    if (msg.code === 'unsupported-version' && sig.version > 1 && this.joinRequest) {
      // An older node: join again with the previous version, same socket.
      console.info(`node ${this.node ? this.node.id : '?'} does not speak protocol version ${sig.version}; joining with version ${sig.version - 1}`);
      sig.version -= 1;
      sig.send('join', this.joinRequest);
      return;
    }
    const retryElsewhere = msg.code === 'draining' || (NODE_LIMIT_ERRORS.has(msg.code) && this.everJoined);
    if (retryElsewhere) {
      if (msg.code === 'draining' && this.node) {
        this.nodes.draining.add(this.node.id);
      }
      this.#lose(`join refused by node ${this.node ? this.node.id : '?'}: ${msg.code}`);
      return;
    }
    if (FATAL_ERRORS.has(msg.code) || NODE_LIMIT_ERRORS.has(msg.code)) {
      this.fatal = true;
      this.#clearTimers();
      this.view.showError(`Cannot join: ${msg.message || msg.code}`);
      this.signaling = null;
      sig.close(1000, 'giving up');
      this.#teardownSession();
      this.#setState('disconnected');
    }
  }

  #onClose(sig, ev) {
    if (sig !== this.signaling) {
      return;
    }
    this.#lose(`signaling closed (${ev.code} ${ev.reason || ''})`);
  }

  /**
   * #lose abandons the current session (if any) and schedules a new one,
   * on another node if possible: after the backoff delay, or at once
   * (immediate, used for "move"). With polite it says "leave" first.
   */
  #lose(why, { polite = false, immediate = false } = {}) {
    if (this.leaving || this.fatal) {
      return;
    }
    console.info(`session lost: ${why}; reconnecting`);
    if (this.node) {
      this.nodes.failed.add(this.node.id);
    }
    const sig = this.signaling;
    this.signaling = null; // its events are ignored from now on
    if (sig) {
      if (polite) {
        sig.send('leave');
      }
      sig.close(polite ? 1000 : CLOSE_RESTART, polite ? 'moving' : 'restart');
    }
    this.#teardownSession();
    this.recovering = true;
    this.#setState('reconnecting');
    if (this.reconnectTimer !== null) {
      return; // already scheduled
    }
    let delay = 0;
    if (!immediate) {
      delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
      this.attempt += 1;
    }
    if (this.attempt >= NOTICE_AFTER_ATTEMPTS) {
      this.view.showNotice('Connection lost. Trying to reconnect…');
    }
    this.reconnectTimer = setTimeout(() => this.#connect(), delay);
  }

  /** teardownSession drops everything tied to one signaling session. */
  #teardownSession() {
    this.joined = false;
    this.participantId = '';
    this.iceServers = [];
    this.#clearInterrupted();
    if (this.publisher) {
      this.publisher.close();
      this.publisher = null;
    }
    this.local.detach();
    this.view.setControls(this.local.state());
    if (this.subscriber) {
      this.subscriber.close();
      this.subscriber = null;
    }
    this.debug.pcs.publisher = null;
    this.debug.pcs.subscriber = null;
    this.producers.clear();
    this.sources.clear();
    this.tileReport.clear();
    this.view.clearTiles();
    this.people.clear();
    this.peopleList.clear();
    this.#updatePeople();
  }

  leave() {
    if (this.leaving) {
      return;
    }
    this.leaving = true;
    this.#clearTimers();
    const sig = this.signaling;
    this.signaling = null;
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

  #clearTimers() {
    if (this.reconnectTimer !== null) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = null;
    }
    this.#clearInterrupted();
  }

  #clearInterrupted() {
    if (this.interruptedTimer !== null) {
      clearTimeout(this.interruptedTimer);
      this.interruptedTimer = null;
    }
  }

  #stopLocalMedia() {
    this.local.stop();
    this.view.removeScreen('local');
  }

  #updateState() {
    if (this.leaving || this.fatal) {
      this.#setState('disconnected');
      return;
    }
    const peers = [this.publisher, this.subscriber].filter((p) => p !== null);
    if (peers.some((p) => p.failed)) {
      // The server notices too and drops us; start over right away.
      this.#lose('a peer connection failed');
      return;
    }
    const waiting = this.recovering ? 'reconnecting' : 'connecting';
    if (!this.joined || !this.signaling || !this.signaling.open) {
      this.#setState(waiting);
      return;
    }
    if (peers.some((p) => p.connected)) {
      this.#clearInterrupted();
      this.recovering = false;
      this.attempt = 0;
      this.#setState('connected');
      return;
    }
    if (peers.some((p) => p.interrupted)) {
      // Media stopped (ICE disconnected). It may come back by itself; if
      // it does not, set up a new session.
      if (this.interruptedTimer === null) {
        this.interruptedTimer = setTimeout(() => {
          this.interruptedTimer = null;
          this.#lose('media interrupted for too long');
        }, INTERRUPTED_MS);
      }
      this.#setState('reconnecting');
      return;
    }
    // Joined with nothing to send and nothing offered yet: no media can
    // flow, but the session is fully up.
    const idle = this.publisher === null && (this.subscriber === null || !this.subscriber.negotiated);
    if (idle) {
      this.recovering = false;
      this.attempt = 0;
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
