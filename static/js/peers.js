// peers.js: the two RTCPeerConnections of a participant.
//
// confab uses one PC per direction, each with exactly one offerer, so there
// is never offer glare:
//   Publisher  - the browser offers (message "publish"), the server answers
//                ("publish-answer"). Send-only.
//   Subscriber - the server offers ("subscriber-offer", repeated whenever
//                the set of remote tracks changes), the browser answers
//                ("subscriber-answer"). Receive-only.
// Both trickle ICE candidates ("candidate" with target "publisher" or
// "subscriber"); remote candidates that arrive before the remote
// description is set are queued and applied afterwards.

import { simulcastEncodings, screenEncodings, maxBitrateFor } from './media.js';

class Peer {
  /**
   * @param {'publisher'|'subscriber'} target
   * @param {(type: string, fields: object) => boolean} send signaling send
   * @param {() => void} onStateChange called on every ICE/connection state change
   * @param {RTCIceServer[]} iceServers the node's TURN servers ("joined", version 4)
   */
  constructor(target, send, onStateChange, iceServers = []) {
    this.target = target;
    this.send = send;
    this.pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', iceServers });
    this.pendingCandidates = [];
    // Local candidates are held until our offer/answer has been sent, so the
    // server never sees a candidate for a description it does not have yet.
    this.localCandidates = [];
    this.described = false;
    this.closed = false;
    this.wasConnected = false;
    this.pc.addEventListener('icecandidate', (ev) => {
      // A null candidate marks the end of gathering; the protocol lets us skip it.
      if (!ev.candidate || !ev.candidate.candidate) {
        return;
      }
      const c = ev.candidate.toJSON();
      if (this.described) {
        this.send('candidate', { target: this.target, candidate: c });
      } else {
        this.localCandidates.push(c);
      }
    });
    const changed = () => {
      if (this.connected) {
        this.wasConnected = true;
      }
      onStateChange();
    };
    this.pc.addEventListener('iceconnectionstatechange', changed);
    this.pc.addEventListener('connectionstatechange', changed);
  }

  /** connected: ICE/DTLS is up, media can flow. */
  get connected() {
    const pc = this.pc;
    return pc.connectionState === 'connected' ||
      pc.iceConnectionState === 'connected' || pc.iceConnectionState === 'completed';
  }

  /** failed: the connection is gone for good (needs a new session). */
  get failed() {
    return this.pc.connectionState === 'failed' || this.pc.iceConnectionState === 'failed';
  }

  /** interrupted: was connected, is currently not (ICE 'disconnected'). */
  get interrupted() {
    return this.wasConnected && !this.connected && !this.closed;
  }

  /** sendDescription sends our offer/answer, then any held local candidates. */
  sendDescription(type, fields) {
    this.send(type, fields);
    this.described = true;
    const held = this.localCandidates;
    this.localCandidates = [];
    for (const c of held) {
      this.send('candidate', { target: this.target, candidate: c });
    }
  }

  /** addRemoteCandidate applies (or queues) a candidate from the server. */
  async addRemoteCandidate(candidate) {
    if (!candidate || !candidate.candidate) {
      return; // end-of-candidates: nothing to do
    }
    const init = { ...candidate };
    if (init.sdpMid == null && init.sdpMLineIndex == null) {
      init.sdpMLineIndex = 0; // one bundled transport: the first m-line
    }
    if (!this.pc.remoteDescription) {
      this.pendingCandidates.push(init);
      return;
    }
    await this.#apply(init);
  }

  async flushCandidates() {
    const queued = this.pendingCandidates;
    this.pendingCandidates = [];
    for (const c of queued) {
      await this.#apply(c);
    }
  }

  async #apply(init) {
    try {
      await this.pc.addIceCandidate(init);
    } catch (err) {
      if (!this.closed) {
        console.warn(`${this.target}: ignoring remote candidate`, err);
      }
    }
  }

  close() {
    this.closed = true;
    this.pc.close();
  }
}

/**
 * Publisher sends the local tracks; the browser is the offerer.
 *
 * Video may go out as simulcast (several encodings named by RID, see
 * media.js). The server says which encodings anyone needs ("encodings",
 * protocol version 2); setEncodings switches them on and off with
 * RTCRtpSender.setParameters. Those updates run one at a time (a promise
 * chain), the latest wish per m-line is kept and applied again after every
 * answer (an update that arrives before the answer waits for it). Audio is
 * never touched.
 */
export class Publisher extends Peer {
  constructor(send, onStateChange, iceServers = []) {
    super('publisher', send, onStateChange, iceServers);
    /** @type {Map<string, Map<string, boolean>>} mid -> rid -> active, the latest "encodings" */
    this.wanted = new Map();
    this.layers = Promise.resolve();
    /** offers run one at a time: the next waits for the previous answer */
    this.offers = Promise.resolve();
    this.answered = null; // resolves the outstanding offer's wait
    this.stream = new MediaStream(); // msid of every sender (the server ignores it)
    this.audio = null; // transceivers: microphone, camera, screen
    this.video = null;
    this.screen = null;
    this.withSources = false;
  }

  /**
   * start adds a microphone and a camera transceiver (each with its track,
   * or none while that device is off: nothing is sent until setTrack) and
   * sends the "publish" offer. With simulcast the camera is offered with
   * simulcastEncodings (when the capture is large enough for two layers and
   * the browser takes them), otherwise, and always for audio, with one
   * encoding. sources: name the m-lines' sources in "publish" (version 3).
   * allowed ({microphone, camera}): what the access token lets us send;
   * the m-line of a source it does not allow is inactive.
   */
  async start({ audio = null, video = null, simulcast = false, sources = false, allowed = null } = {}) {
    this.withSources = sources;
    this.audio = this.pc.addTransceiver(audio || 'audio', { direction: 'sendonly', streams: [this.stream] });
    const height = video ? video.getSettings().height : 720;
    this.video = this.#addVideo(video, simulcast ? simulcastEncodings(height) : null);
    // A source the access token does not allow is not offered for sending.
    if (allowed && !allowed.microphone) {
      this.audio.direction = 'inactive';
    }
    if (allowed && !allowed.camera) {
      this.video.direction = 'inactive';
    }
    await this.negotiate();
  }

  #addVideo(track, sendEncodings) {
    const init = { direction: 'sendonly', streams: [this.stream] };
    if (sendEncodings) {
      try {
        return this.pc.addTransceiver(track || 'video', { ...init, sendEncodings });
      } catch (err) {
        console.warn('publisher: simulcast refused by the browser; sending one encoding', err);
      }
    }
    return this.pc.addTransceiver(track || 'video', init);
  }

  /**
   * setTrack sends track (null: nothing) as the microphone ('audio') or
   * camera ('video'), without renegotiation.
   */
  async setTrack(kind, track) {
    const t = kind === 'audio' ? this.audio : this.video;
    if (!t || this.closed) {
      return;
    }
    await t.sender.replaceTrack(track);
    if (track && kind === 'video' && t.mid !== null) {
      this.#enqueue(() => this.#apply(t.mid));
    }
  }

  /**
   * startScreen sends a screen capture as its own m-line (reusing the one
   * of an earlier share), as simulcast (screenEncodings) when it is new and
   * large enough, and renegotiates.
   */
  async startScreen(track, { simulcast = false } = {}) {
    if (this.screen && this.screen.currentDirection !== 'stopped') {
      this.screen.direction = 'sendonly';
      await this.screen.sender.replaceTrack(track);
    } else {
      this.screen = this.#addVideo(track, simulcast ? screenEncodings(track.getSettings().height) : null);
    }
    await this.negotiate();
  }

  /** stopScreen stops sending the screen (its m-line goes inactive) and renegotiates. */
  async stopScreen() {
    if (!this.screen || this.closed) {
      return;
    }
    await this.screen.sender.replaceTrack(null);
    this.screen.direction = 'inactive';
    await this.negotiate();
  }

  /**
   * negotiate sends a new "publish" offer once the previous one was
   * answered (or 10 s passed), so that the server never sees two at once.
   */
  negotiate() {
    this.offers = this.offers.then(() => this.#offer()).catch((err) => {
      if (!this.closed) {
        console.error('publisher: cannot negotiate', err);
      }
    });
    return this.offers;
  }

  async #offer() {
    if (this.closed) {
      return;
    }
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    const answered = new Promise((resolve) => {
      this.answered = resolve;
      setTimeout(resolve, 10000);
    });
    const fields = { sdp: { type: 'offer', sdp: this.pc.localDescription.sdp } };
    if (this.withSources) {
      fields.sources = this.sources();
    }
    this.sendDescription('publish', fields);
    await answered;
  }

  /** sources names the source of each negotiated m-line. */
  sources() {
    const out = {};
    for (const [t, name] of [[this.audio, 'microphone'], [this.video, 'camera'], [this.screen, 'screen']]) {
      if (t && t.mid !== null) {
        out[t.mid] = name;
      }
    }
    return out;
  }

  /** applyAnswer sets the server's "publish-answer". */
  async applyAnswer(sdp) {
    try {
      await this.pc.setRemoteDescription({ type: 'answer', sdp: sdp.sdp });
      await this.flushCandidates();
      this.#enqueue(() => this.#afterAnswer());
    } finally {
      if (this.answered) {
        this.answered();
        this.answered = null;
      }
    }
  }

  /**
   * setEncodings applies an "encodings" message: the encodings of the video
   * sender on m-line mid (or, when no transceiver has that mid, of the only
   * video sender) are set active or not by RID; rid "" is the encoding of
   * a single-encoding sender. Encodings not listed are left alone.
   */
  setEncodings({ mid, layers }) {
    if (!Array.isArray(layers)) {
      return this.layers;
    }
    const want = new Map();
    for (const l of layers) {
      if (l && typeof l.rid === 'string' && typeof l.active === 'boolean') {
        want.set(l.rid, l.active);
      }
    }
    const key = typeof mid === 'string' ? mid : '';
    this.wanted.set(key, want);
    return this.#enqueue(() => this.#apply(key));
  }

  /**
   * encodings describes the video senders for tests:
   * [{mid, encodings: [{rid, active, scaleResolutionDownBy, maxBitrate}]}].
   */
  encodings() {
    return this.#videoTransceivers().map((t) => ({
      mid: t.mid,
      encodings: (t.sender.getParameters().encodings || []).map((e) => ({
        rid: e.rid || '',
        active: e.active !== false,
        scaleResolutionDownBy: e.scaleResolutionDownBy || 1,
        maxBitrate: e.maxBitrate || 0,
      })),
    }));
  }

  #enqueue(fn) {
    this.layers = this.layers.then(fn).catch((err) => {
      if (!this.closed) {
        console.warn('publisher: cannot update encodings', err);
      }
    });
    return this.layers;
  }

  /**
   * #afterAnswer runs once the answer is set: a simulcast offer the server
   * did not accept leaves the browser with the first (lowest) encoding
   * only, which is then scaled back to full resolution; and the latest
   * wishes are applied again.
   */
  async #afterAnswer() {
    for (const t of this.#videoTransceivers()) {
      const params = t.sender.getParameters();
      const encs = params.encodings || [];
      if (encs.length === 1 && (encs[0].scaleResolutionDownBy || 1) > 1) {
        encs[0].scaleResolutionDownBy = 1;
        const height = t.sender.track ? t.sender.track.getSettings().height : 0;
        encs[0].maxBitrate = maxBitrateFor(height || 720);
        console.info(`publisher: simulcast not accepted on m-line ${t.mid}; sending one full-resolution encoding`);
        await t.sender.setParameters(params);
      }
    }
    for (const mid of this.wanted.keys()) {
      await this.#apply(mid);
    }
  }

  async #apply(mid) {
    const want = this.wanted.get(mid);
    if (this.closed || !want || !this.pc.remoteDescription) {
      return; // applied after the answer
    }
    const all = this.pc.getTransceivers();
    let t = all.find((x) => x.mid === mid);
    if (!t) {
      const videos = this.#videoTransceivers();
      t = videos.length === 1 ? videos[0] : undefined;
    }
    if (!t || !this.#isVideoSender(t)) {
      return; // unknown m-line, or audio: never paused
    }
    const params = t.sender.getParameters();
    const encs = params.encodings || [];
    let changed = false;
    for (const enc of encs) {
      const rid = encs.length === 1 && want.has('') ? '' : (enc.rid || '');
      const active = want.get(rid);
      if (active !== undefined && (enc.active !== false) !== active) {
        enc.active = active;
        changed = true;
      }
    }
    if (changed) {
      await t.sender.setParameters(params);
    }
  }

  #isVideoSender(t) {
    return t.currentDirection !== 'stopped' && t.receiver && t.receiver.track && t.receiver.track.kind === 'video';
  }

  #videoTransceivers() {
    return this.pc.getTransceivers().filter((t) => this.#isVideoSender(t) && t.mid !== null);
  }
}

/** Subscriber receives the remote tracks; the server is the offerer. */
export class Subscriber extends Peer {
  /**
   * @param {(ev: RTCTrackEvent) => void} onTrack
   * @param {RTCIceServer[]} iceServers the node's TURN servers ("joined", version 4)
   */
  constructor(send, onStateChange, onTrack, iceServers = []) {
    super('subscriber', send, onStateChange, iceServers);
    this.chain = Promise.resolve();
    this.pc.addEventListener('track', onTrack);
  }

  /** negotiated: the server has made at least one offer. */
  get negotiated() {
    return this.pc.remoteDescription !== null;
  }

  /**
   * handleOffer answers a "subscriber-offer". Offers are processed strictly
   * in order (the server may re-offer whenever tracks come and go).
   */
  handleOffer(sdp) {
    this.chain = this.chain
      .then(() => this.#answer(sdp))
      .catch((err) => {
        if (!this.closed) {
          console.error('subscriber: cannot answer offer', err);
        }
      });
    return this.chain;
  }

  async #answer(sdp) {
    if (this.closed) {
      return;
    }
    await this.pc.setRemoteDescription({ type: 'offer', sdp: sdp.sdp });
    await this.flushCandidates();
    const answer = await this.pc.createAnswer();
    await this.pc.setLocalDescription(answer);
    this.sendDescription('subscriber-answer', { sdp: { type: 'answer', sdp: this.pc.localDescription.sdp } });
  }
}
