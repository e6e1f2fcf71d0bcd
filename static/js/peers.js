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

class Peer {
  /**
   * @param {'publisher'|'subscriber'} target
   * @param {(type: string, fields: object) => boolean} send signaling send
   * @param {() => void} onStateChange called on every ICE/connection state change
   */
  constructor(target, send, onStateChange) {
    this.target = target;
    this.send = send;
    this.pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
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

/** Publisher sends the local tracks; the browser is the offerer. */
export class Publisher extends Peer {
  constructor(send, onStateChange) {
    super('publisher', send, onStateChange);
  }

  /** start adds every track of stream and sends the "publish" offer. */
  async start(stream) {
    for (const track of stream.getTracks()) {
      this.pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
    }
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    this.sendDescription('publish', { sdp: { type: 'offer', sdp: this.pc.localDescription.sdp } });
  }

  /** applyAnswer sets the server's "publish-answer". */
  async applyAnswer(sdp) {
    await this.pc.setRemoteDescription({ type: 'answer', sdp: sdp.sdp });
    await this.flushCandidates();
  }
}

/** Subscriber receives the remote tracks; the server is the offerer. */
export class Subscriber extends Peer {
  /**
   * @param {(ev: RTCTrackEvent) => void} onTrack
   */
  constructor(send, onStateChange, onTrack) {
    super('subscriber', send, onStateChange);
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
