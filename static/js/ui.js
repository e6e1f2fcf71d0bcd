// ui.js: everything that touches the DOM of the room page.
//
// Stable hooks for tests (data-testid): local-video, remote-tile (with
// data-participant-id and data-participant-name), remote-video and
// remote-audio inside a tile (each with data-producer-id, the producer id
// of the track it plays, once one is attached), connection-state, node-id,
// leave. The full list is in docs/protocol.md (The room page for tests).

export const STATES = Object.freeze(['connecting', 'connected', 'reconnecting', 'disconnected']);

function q(root, testid) {
  return root.querySelector(`[data-testid="${testid}"]`);
}

function initial(name) {
  const first = Array.from((name || '').trim())[0];
  return first ? first.toUpperCase() : '?';
}

/** playQuietly starts playback, ignoring autoplay-policy rejections. */
function playQuietly(el) {
  const p = el.play();
  if (p && typeof p.catch === 'function') {
    p.catch(() => {});
  }
}

export class RoomView {
  /** @param {HTMLElement} root the #room element */
  constructor(root) {
    this.root = root;
    this.grid = q(root, 'grid');
    this.stateEl = q(root, 'connection-state');
    this.nodeEl = q(root, 'node-id');
    this.errorEl = q(root, 'error');
    this.noticeEl = q(root, 'notice');
    this.localVideo = q(root, 'local-video');
    this.localTile = q(root, 'local-tile');
    this.leaveBtn = q(root, 'leave');
    this.audioBtn = q(root, 'toggle-audio');
    this.videoBtn = q(root, 'toggle-video');
    this.rejoinEl = q(root, 'rejoin');
    /** @type {Map<string, HTMLElement>} participant id -> tile */
    this.tiles = new Map();
  }

  setState(state) {
    if (this.stateEl.textContent !== state) {
      this.stateEl.textContent = state;
    }
    this.stateEl.dataset.state = state;
    this.root.dataset.state = state;
  }

  setNodeID(id) {
    if (id && this.nodeEl.textContent !== id) {
      this.nodeEl.textContent = id;
    }
  }

  showError(text) {
    this.errorEl.textContent = text;
    this.errorEl.hidden = !text;
  }

  showNotice(text) {
    this.noticeEl.textContent = text;
    this.noticeEl.hidden = !text;
  }

  /** setLocalStream shows the local preview (null: no camera/microphone). */
  setLocalStream(stream) {
    const hasVideo = !!stream && stream.getVideoTracks().length > 0;
    this.localVideo.srcObject = hasVideo ? stream : null;
    this.localTile.classList.toggle('has-video', hasVideo);
    if (hasVideo) {
      playQuietly(this.localVideo);
    }
    const audio = stream ? stream.getAudioTracks()[0] : undefined;
    const video = stream ? stream.getVideoTracks()[0] : undefined;
    this.#bindToggle(this.audioBtn, audio, 'Mute', 'Unmute');
    this.#bindToggle(this.videoBtn, video, 'Stop video', 'Start video');
  }

  #bindToggle(btn, track, onLabel, offLabel) {
    btn.disabled = !track;
    if (!track) {
      return;
    }
    btn.onclick = () => {
      track.enabled = !track.enabled;
      btn.setAttribute('aria-pressed', String(!track.enabled));
      btn.textContent = track.enabled ? onLabel : offLabel;
      if (track.kind === 'video') {
        this.localTile.classList.toggle('has-video', track.enabled);
      }
    };
  }

  /** onLeave wires the leave button. */
  onLeave(handler) {
    this.leaveBtn.addEventListener('click', handler);
  }

  /** showLeft disables the controls and offers to join again. */
  showLeft(rejoinHref) {
    this.leaveBtn.disabled = true;
    this.audioBtn.disabled = true;
    this.videoBtn.disabled = true;
    this.localVideo.srcObject = null;
    this.localTile.classList.remove('has-video');
    const link = this.rejoinEl.querySelector('a');
    if (link && rejoinHref) {
      link.href = rejoinHref;
    }
    this.rejoinEl.hidden = false;
  }

  /**
   * ensureTile returns the tile of a remote participant, creating it when
   * unknown. A non-empty name updates the label.
   */
  ensureTile(id, name, remoteNode) {
    let tile = this.tiles.get(id);
    if (!tile) {
      tile = document.createElement('figure');
      tile.className = 'tile remote';
      tile.dataset.testid = 'remote-tile';
      tile.dataset.participantId = id;

      const video = document.createElement('video');
      video.dataset.testid = 'remote-video';
      video.autoplay = true;
      video.playsInline = true;
      video.muted = true; // sound comes from the <audio> element
      const audio = document.createElement('audio');
      audio.dataset.testid = 'remote-audio';
      audio.autoplay = true;
      const avatar = document.createElement('div');
      avatar.className = 'avatar';
      avatar.setAttribute('aria-hidden', 'true');
      const label = document.createElement('figcaption');
      label.className = 'label';
      const labelName = document.createElement('span');
      labelName.className = 'label-name';
      label.append(labelName);

      tile.append(video, audio, avatar, label);
      this.tiles.set(id, tile);
      this.grid.append(tile);
      this.#updateCount();
    }
    if (name) {
      tile.dataset.participantName = name;
      tile.querySelector('.label-name').textContent = name;
      tile.querySelector('.avatar').textContent = initial(name);
    }
    if (remoteNode) {
      this.#setBadge(tile, `via ${remoteNode}`);
    }
    return tile;
  }

  #setBadge(tile, text) {
    const label = tile.querySelector('.label');
    let badge = label.querySelector('.badge');
    if (!badge) {
      badge = document.createElement('span');
      badge.className = 'badge';
      label.append(' ', badge);
    }
    badge.textContent = text;
  }

  removeTile(id) {
    const tile = this.tiles.get(id);
    if (!tile) {
      return;
    }
    for (const el of tile.querySelectorAll('video, audio')) {
      el.srcObject = null;
    }
    tile.remove();
    this.tiles.delete(id);
    this.#updateCount();
  }

  clearTiles() {
    for (const id of Array.from(this.tiles.keys())) {
      this.removeTile(id);
    }
  }

  /**
   * videoOf is the <video> of a remote participant's tile (created when
   * unknown): the element that shows its video producer.
   */
  videoOf(participantId) {
    return this.ensureTile(participantId, '').querySelector('video');
  }

  /**
   * attachTrack shows a received track in its participant's tile and
   * returns the element playing it.
   */
  attachTrack(participantId, track) {
    const tile = this.ensureTile(participantId, '');
    const el = tile.querySelector(track.kind === 'video' ? 'video' : 'audio');
    el.srcObject = new MediaStream([track]);
    el.dataset.producerId = track.id;
    playQuietly(el);
    const current = () => el.dataset.producerId === track.id;
    track.addEventListener('ended', () => {
      if (current()) {
        this.#detach(tile, el);
      }
    });
    if (track.kind !== 'video') {
      return el;
    }
    // Show the video (instead of the avatar) only while frames arrive.
    const showing = (on) => {
      if (current()) {
        tile.classList.toggle('has-video', on);
      }
    };
    el.addEventListener('playing', () => showing(!track.muted));
    el.addEventListener('resize', () => showing(!track.muted));
    track.addEventListener('mute', () => showing(false));
    track.addEventListener('unmute', () => showing(true));
    if (!track.muted && el.readyState >= HTMLMediaElement.HAVE_CURRENT_DATA) {
      showing(true);
    }
    return el;
  }

  /** detachProducer removes a producer's track from whichever tile shows it. */
  detachProducer(producerId) {
    for (const tile of this.tiles.values()) {
      for (const el of tile.querySelectorAll('video, audio')) {
        if (el.dataset.producerId === producerId) {
          this.#detach(tile, el);
        }
      }
    }
  }

  #detach(tile, el) {
    el.srcObject = null;
    delete el.dataset.producerId;
    if (el.tagName === 'VIDEO') {
      tile.classList.remove('has-video');
    }
  }

  #updateCount() {
    this.grid.dataset.count = String(this.tiles.size + 1);
  }
}
