// ui.js: the call area of the room page: connection state, banners, the
// local tile and controls, remote tiles (one per participant, publishing
// or not) with their media state, screen share tiles and the layout (a
// grid that fits the count, or a spotlight for a screen share or a pinned
// participant).
//
// Stable hooks for tests (data-testid): local-video, local-tile,
// remote-tile (with data-participant-id, data-participant-name,
// data-audio-muted, data-video-muted, data-speaking, data-pinned),
// remote-video and remote-audio inside a tile (each with data-producer-id
// once a track is attached), screen-tile and local-screen-tile (with
// screen-video inside), connection-state, node-id, grid (data-count,
// data-layout), the control buttons. The full list is in docs/protocol.md
// (The room page for tests).

export const STATES = Object.freeze(['connecting', 'connected', 'reconnecting', 'disconnected']);

// Most grid columns, and most rows on one screen (beyond: scrolling).
const MAX_COLS = 5;
// Below this width the page uses the phone layout (at most 2 columns).
const NARROW_PX = 600;

export function q(root, testid) {
  return root.querySelector(`[data-testid="${testid}"]`);
}

/** initials are the first letters of up to two words of name. */
export function initials(name) {
  const words = (name || '').trim().split(/\s+/).filter(Boolean);
  const letters = words.slice(0, 2).map((w) => Array.from(w)[0].toUpperCase());
  return letters.join('') || '?';
}

/** playQuietly starts playback, ignoring autoplay-policy rejections. */
function playQuietly(el) {
  const p = el.play();
  if (p && typeof p.catch === 'function') {
    p.catch(() => {});
  }
}

function el(tag, className, testid) {
  const e = document.createElement(tag);
  if (className) {
    e.className = className;
  }
  if (testid) {
    e.dataset.testid = testid;
  }
  return e;
}

/** setFlag sets a "true"/"false" data attribute. */
export function setFlag(node, name, on) {
  node.dataset[name] = on ? 'true' : 'false';
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
    this.shareBtn = q(root, 'share-screen');
    this.rejoinEl = q(root, 'rejoin');
    this.countEl = q(root, 'participant-count');
    /** @type {Map<string, HTMLElement>} participant id -> tile */
    this.tiles = new Map();
    /** @type {Map<string, HTMLElement>} producer id -> screen tile ('local' for our own) */
    this.screens = new Map();
    this.pinned = '';
    this.noticeTimer = null;
    this.grid.addEventListener('click', (ev) => {
      const tile = ev.target.closest('[data-testid="remote-tile"]');
      if (tile) {
        this.togglePin(tile.dataset.participantId);
      }
    });
    this.grid.addEventListener('keydown', (ev) => {
      const tile = ev.target.closest('[data-testid="remote-tile"]');
      if (tile && (ev.key === 'Enter' || ev.key === ' ')) {
        ev.preventDefault();
        this.togglePin(tile.dataset.participantId);
      }
    });
    new ResizeObserver(() => this.#layout()).observe(this.grid);
    this.#layout();
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

  /** showNotice shows text (cleared after ms when given). */
  showNotice(text, ms = 0) {
    clearTimeout(this.noticeTimer);
    this.noticeEl.textContent = text;
    this.noticeEl.hidden = !text;
    if (text && ms > 0) {
      this.noticeTimer = setTimeout(() => this.showNotice(''), ms);
    }
  }

  /** setCount shows the number of participants, self included. */
  setCount(n) {
    this.countEl.textContent = String(n);
  }

  /** setLocalVideo shows the camera preview (null: camera off). */
  setLocalVideo(track) {
    this.localVideo.srcObject = track ? new MediaStream([track]) : null;
    this.localTile.classList.toggle('has-video', !!track);
    if (track) {
      playQuietly(this.localVideo);
    }
  }

  /**
   * setControls shows the local media state on the buttons and the local
   * tile: {audioMuted, videoMuted, sharing, canAudio, canVideo, canShare}.
   */
  setControls(st) {
    const set = (btn, pressed, enabled, label, text) => {
      btn.disabled = !enabled;
      btn.setAttribute('aria-pressed', String(pressed));
      btn.setAttribute('aria-label', label);
      btn.querySelector('.ctl-label').textContent = text;
    };
    set(this.audioBtn, st.audioMuted, st.canAudio,
      st.audioMuted ? 'Unmute microphone' : 'Mute microphone', st.audioMuted ? 'Unmute' : 'Mute');
    set(this.videoBtn, st.videoMuted, st.canVideo,
      st.videoMuted ? 'Turn camera on' : 'Turn camera off', st.videoMuted ? 'Start video' : 'Stop video');
    set(this.shareBtn, st.sharing, st.canShare,
      st.sharing ? 'Stop sharing your screen' : 'Share your screen', st.sharing ? 'Stop share' : 'Share');
    setFlag(this.localTile, 'audioMuted', st.audioMuted);
    setFlag(this.localTile, 'videoMuted', st.videoMuted);
    this.localTile.querySelector('.mic-off').hidden = !st.audioMuted;
  }

  /** setLocalSpeaking highlights the local tile. */
  setLocalSpeaking(on) {
    setFlag(this.localTile, 'speaking', on);
  }

  /** onLeave wires the leave button. */
  onLeave(handler) {
    this.leaveBtn.addEventListener('click', handler);
  }

  /** showLeft disables the controls and offers to join again. */
  showLeft(rejoinHref) {
    for (const btn of this.root.querySelectorAll('.controls button')) {
      btn.disabled = true;
    }
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
      tile = el('figure', 'tile remote', 'remote-tile');
      tile.dataset.participantId = id;
      tile.tabIndex = 0;
      tile.setAttribute('role', 'button');
      setFlag(tile, 'audioMuted', false);
      setFlag(tile, 'videoMuted', false);
      setFlag(tile, 'speaking', false);
      setFlag(tile, 'pinned', false);

      const video = el('video', '', 'remote-video');
      video.autoplay = true;
      video.playsInline = true;
      video.muted = true; // sound comes from the <audio> element
      const audio = el('audio', '', 'remote-audio');
      audio.autoplay = true;
      const avatar = el('div', 'avatar');
      avatar.setAttribute('aria-hidden', 'true');
      const label = el('figcaption', 'label');
      const micOff = el('span', 'mic-off');
      micOff.setAttribute('aria-label', 'microphone off');
      micOff.hidden = true;
      const labelName = el('span', 'label-name');
      label.append(micOff, labelName);

      tile.append(video, audio, avatar, label);
      this.tiles.set(id, tile);
      this.grid.append(tile);
      this.#layout();
    }
    if (name) {
      tile.dataset.participantName = name;
      tile.querySelector('.label-name').textContent = name;
      tile.querySelector('.avatar').textContent = initials(name);
      tile.setAttribute('aria-label', `${name}: click to pin`);
    }
    if (remoteNode) {
      this.#setBadge(tile, `via ${remoteNode}`);
    }
    return tile;
  }

  /** setParticipantState shows a remote participant's media state. */
  setParticipantState(id, { audioMuted = false, videoMuted = false, speaking = false }) {
    const tile = this.tiles.get(id);
    if (!tile) {
      return;
    }
    setFlag(tile, 'audioMuted', audioMuted);
    setFlag(tile, 'videoMuted', videoMuted);
    const wasSpeaking = tile.dataset.speaking === 'true';
    setFlag(tile, 'speaking', speaking);
    tile.querySelector('.mic-off').hidden = !audioMuted;
    if (speaking && !wasSpeaking) {
      this.#keepVisible(tile);
    }
  }

  /**
   * #keepVisible brings a speaker's tile into view when it is scrolled out
   * of the grid (more tiles than fit on screen): it takes the place of the
   * first remote tile in view, wherever the grid is scrolled to, so the
   * user's scroll position is kept.
   */
  #keepVisible(tile) {
    if (this.grid.dataset.layout !== 'grid' || this.grid.scrollHeight <= this.grid.clientHeight + 1) {
      return;
    }
    const g = this.grid.getBoundingClientRect();
    const inView = (t) => {
      const r = t.getBoundingClientRect();
      return r.top >= g.top - 1 && r.bottom <= g.bottom + 1;
    };
    if (inView(tile)) {
      return;
    }
    const target = Array.from(this.grid.children).find((t) => t !== tile && t !== this.localTile && inView(t));
    if (!target) {
      tile.scrollIntoView({ block: 'nearest' });
      return;
    }
    // Moving a tile from before target shifts target back by one place:
    // then the speaker goes after it to land on target's old place.
    if (tile.compareDocumentPosition(target) & Node.DOCUMENT_POSITION_FOLLOWING) {
      target.after(tile);
    } else {
      target.before(tile);
    }
  }

  #setBadge(tile, text) {
    const label = tile.querySelector('.label');
    let badge = label.querySelector('.badge');
    if (!badge) {
      badge = el('span', 'badge');
      label.append(' ', badge);
    }
    badge.textContent = text;
  }

  removeTile(id) {
    const tile = this.tiles.get(id);
    if (!tile) {
      return;
    }
    for (const m of tile.querySelectorAll('video, audio')) {
      m.srcObject = null;
    }
    tile.remove();
    this.tiles.delete(id);
    if (this.pinned === id) {
      this.pinned = '';
    }
    this.#layout();
  }

  clearTiles() {
    for (const id of Array.from(this.tiles.keys())) {
      this.removeTile(id);
    }
    for (const id of Array.from(this.screens.keys())) {
      if (id !== 'local') {
        this.removeScreen(id);
      }
    }
  }

  /**
   * videoOf is the <video> of a remote participant's tile (created when
   * unknown): the element that shows its camera.
   */
  videoOf(participantId) {
    return this.ensureTile(participantId, '').querySelector('video');
  }

  /**
   * attachTrack shows a received camera or microphone track in its
   * participant's tile and returns the element playing it.
   */
  attachTrack(participantId, track) {
    const tile = this.ensureTile(participantId, '');
    const media = tile.querySelector(track.kind === 'video' ? 'video' : 'audio');
    media.srcObject = new MediaStream([track]);
    media.dataset.producerId = track.id;
    playQuietly(media);
    const current = () => media.dataset.producerId === track.id;
    track.addEventListener('ended', () => {
      if (current()) {
        this.#detach(tile, media);
      }
    });
    if (track.kind !== 'video') {
      return media;
    }
    // Show the video (instead of the avatar) only while frames arrive.
    const showing = (on) => {
      if (current()) {
        tile.classList.toggle('has-video', on);
      }
    };
    media.addEventListener('playing', () => showing(!track.muted));
    media.addEventListener('resize', () => showing(!track.muted));
    track.addEventListener('mute', () => showing(false));
    track.addEventListener('unmute', () => showing(true));
    if (!track.muted && media.readyState >= HTMLMediaElement.HAVE_CURRENT_DATA) {
      showing(true);
    }
    return media;
  }

  /**
   * ensureScreen returns the video element of a screen tile (key: the
   * producer id, or 'local' for our own share), creating the tile.
   */
  ensureScreen(key, participantId, name) {
    let tile = this.screens.get(key);
    if (!tile) {
      const local = key === 'local';
      tile = el('figure', 'tile screen', local ? 'local-screen-tile' : 'screen-tile');
      tile.dataset.participantId = participantId;
      const video = el('video', '', 'screen-video');
      video.autoplay = true;
      video.playsInline = true;
      video.muted = true;
      const label = el('figcaption', 'label');
      label.append(el('span', 'label-name'));
      tile.append(video, label);
      this.screens.set(key, tile);
      this.grid.prepend(tile);
      this.#layout();
    }
    tile.dataset.participantName = name;
    tile.querySelector('.label-name').textContent = key === 'local' ? 'Your screen' : `${name}'s screen`;
    return tile.querySelector('video');
  }

  /** attachScreen plays track in the screen tile key. */
  attachScreen(key, participantId, name, track) {
    const video = this.ensureScreen(key, participantId, name);
    video.srcObject = new MediaStream([track]);
    video.dataset.producerId = track.id;
    playQuietly(video);
    return video;
  }

  /** removeScreen removes the screen tile key. */
  removeScreen(key) {
    const tile = this.screens.get(key);
    if (!tile) {
      return;
    }
    tile.querySelector('video').srcObject = null;
    tile.remove();
    this.screens.delete(key);
    this.#layout();
  }

  /** detachProducer removes a producer's track from whichever tile shows it. */
  detachProducer(producerId) {
    if (this.screens.has(producerId)) {
      this.removeScreen(producerId);
      return;
    }
    for (const tile of this.tiles.values()) {
      for (const m of tile.querySelectorAll('video, audio')) {
        if (m.dataset.producerId === producerId) {
          this.#detach(tile, m);
        }
      }
    }
  }

  #detach(tile, media) {
    media.srcObject = null;
    delete media.dataset.producerId;
    if (media.tagName === 'VIDEO') {
      tile.classList.remove('has-video');
    }
  }

  /** togglePin pins a participant's tile (spotlight) or unpins it. */
  togglePin(id) {
    this.pinned = this.pinned === id ? '' : id;
    for (const [pid, tile] of this.tiles) {
      setFlag(tile, 'pinned', pid === this.pinned);
    }
    this.#layout();
  }

  /**
   * #layout picks grid or spotlight and sizes the grid: a screen share
   * (the newest) or else the pinned tile is the spotlight; otherwise the
   * tiles fill columns that fit the count (at most MAX_COLS; two on a
   * phone) and rows share the height, each at least 120 px (the CSS):
   * beyond that the grid scrolls.
   */
  #layout() {
    const screens = Array.from(this.screens.values());
    const main = screens.length > 0 ? screens[0] : (this.pinned ? this.tiles.get(this.pinned) : null);
    for (const t of this.grid.children) {
      t.classList.toggle('spotlit', t === main);
    }
    this.grid.dataset.layout = main ? 'spotlight' : 'grid';
    const count = this.tiles.size + 1 + screens.length;
    this.grid.dataset.count = String(this.tiles.size + 1);
    if (main) {
      return;
    }
    const narrow = this.grid.clientWidth > 0 && this.grid.clientWidth < NARROW_PX;
    let cols = Math.min(MAX_COLS, Math.ceil(Math.sqrt(count)));
    if (narrow) {
      cols = count <= 2 ? 1 : 2;
    }
    this.grid.style.setProperty('--cols', String(cols));
  }
}
