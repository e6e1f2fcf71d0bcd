// panels.js: the side panels of the room page (people, chat) and the
// device settings dialog.
//
// Hooks for tests (data-testid, listed in docs/protocol.md):
// participant-list with one participant-item per participant (self
// included), chat-panel, chat-log, chat-message (data-from,
// data-message-id; chat-from, chat-time, chat-text inside), chat-input,
// chat-send, chat-error, unread-badge, settings-dialog, camera-select,
// mic-select, settings-close. Text from other people is only ever set
// with textContent: a message is shown as the text it is.

import { q, initials, setFlag } from './ui.js';

// Chat limits the page checks before sending (the server checks again).
export const CHAT_MAX_BYTES = 2048;

/** Panels opens and closes the people and chat panels (one at a time). */
export class Panels {
  constructor(root, { onChatOpen } = {}) {
    this.people = q(root, 'participants-panel');
    this.chat = q(root, 'chat-panel');
    this.peopleBtn = q(root, 'toggle-participants');
    this.chatBtn = q(root, 'toggle-chat');
    this.onChatOpen = onChatOpen || (() => {});
    this.peopleBtn.addEventListener('click', () => this.toggle('people'));
    this.chatBtn.addEventListener('click', () => this.toggle('chat'));
    q(root, 'participant-count-button').addEventListener('click', () => this.toggle('people'));
  }

  get chatOpen() {
    return !this.chat.hidden;
  }

  toggle(which) {
    const open = which === 'chat' ? this.chat.hidden : this.people.hidden;
    this.chat.hidden = !(open && which === 'chat');
    this.people.hidden = !(open && which === 'people');
    this.chatBtn.setAttribute('aria-pressed', String(!this.chat.hidden));
    this.peopleBtn.setAttribute('aria-pressed', String(!this.people.hidden));
    if (!this.chat.hidden) {
      this.onChatOpen();
    }
  }
}

/** PeopleList shows everyone in the room with their media state. */
export class PeopleList {
  constructor(root) {
    this.list = q(root, 'participant-list');
    /** @type {Map<string, HTMLElement>} participant id ('self' for us) -> item */
    this.items = new Map();
    /** admin: items of others get moderation buttons calling onModerate */
    this.admin = false;
    /** @type {(action: string, id: string, kind?: string) => void} */
    this.onModerate = () => {};
  }

  /** setAdmin shows (or hides) the moderation buttons of the others' items. */
  setAdmin(on) {
    this.admin = on;
    for (const item of this.items.values()) {
      const actions = item.querySelector('.admin-actions');
      if (actions) {
        actions.hidden = !on;
      }
    }
  }

  #adminActions(item) {
    const box = document.createElement('span');
    box.className = 'admin-actions';
    box.hidden = !this.admin;
    for (const [testid, label, action, kind] of [
      ['admin-mute-audio', 'Mute microphone', 'mute', 'audio'],
      ['admin-mute-video', 'Turn camera off', 'mute', 'video'],
      ['admin-remove', 'Remove from the room', 'remove', undefined],
    ]) {
      const btn = document.createElement('button');
      btn.type = 'button';
      btn.className = 'mini';
      btn.dataset.testid = testid;
      btn.textContent = label;
      btn.setAttribute('aria-label', label);
      btn.addEventListener('click', () => this.onModerate(action, item.dataset.participantId, kind));
      box.append(btn);
    }
    return box;
  }

  /** set adds or updates a participant: {id, name, audioMuted, videoMuted, speaking, self, node}. */
  set(p) {
    const key = p.self ? 'self' : p.id;
    let item = this.items.get(key);
    if (!item) {
      item = document.createElement('li');
      item.className = 'person';
      item.dataset.testid = 'participant-item';
      const avatar = document.createElement('span');
      avatar.className = 'avatar small';
      avatar.setAttribute('aria-hidden', 'true');
      const name = document.createElement('span');
      name.className = 'person-name';
      const icons = document.createElement('span');
      icons.className = 'person-icons';
      const mic = document.createElement('span');
      mic.className = 'mic-off';
      mic.setAttribute('aria-label', 'microphone off');
      const cam = document.createElement('span');
      cam.className = 'cam-off';
      cam.setAttribute('aria-label', 'camera off');
      icons.append(mic, cam);
      item.append(avatar, name, icons);
      if (!p.self) {
        item.append(this.#adminActions(item));
      }
      if (p.self) {
        item.dataset.self = 'true';
        this.list.prepend(item);
      } else {
        this.list.append(item);
      }
      this.items.set(key, item);
    }
    item.dataset.participantId = p.id || '';
    item.dataset.participantName = p.name;
    item.querySelector('.avatar').textContent = initials(p.name);
    item.querySelector('.person-name').textContent = p.self ? `${p.name} (you)` : p.name;
    item.title = p.node ? `on node ${p.node}` : '';
    setFlag(item, 'audioMuted', !!p.audioMuted);
    setFlag(item, 'videoMuted', !!p.videoMuted);
    setFlag(item, 'speaking', !!p.speaking);
    item.querySelector('.mic-off').hidden = !p.audioMuted;
    item.querySelector('.cam-off').hidden = !p.videoMuted;
  }

  remove(id) {
    const item = this.items.get(id);
    if (item) {
      item.remove();
      this.items.delete(id);
    }
  }

  /** clear removes everyone but us. */
  clear() {
    for (const id of Array.from(this.items.keys())) {
      if (id !== 'self') {
        this.remove(id);
      }
    }
  }

  get size() {
    return this.items.size;
  }
}

function utf8Length(s) {
  return new TextEncoder().encode(s).length;
}

function timeOf(ms) {
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/**
 * Chat keeps the room's messages (by id: each shown once, across
 * reconnections and failovers), shows them in time order, counts unread
 * ones while the panel is closed and sends with onSend(text).
 */
export class Chat {
  constructor(root, { onSend, isOpen }) {
    this.log = q(root, 'chat-log');
    this.input = q(root, 'chat-input');
    this.sendBtn = q(root, 'chat-send');
    this.errorEl = q(root, 'chat-error');
    this.badge = q(root, 'unread-badge');
    this.onSend = onSend;
    this.isOpen = isOpen;
    /** @type {Map<string, {id, from, fromName, text, at}>} */
    this.messages = new Map();
    this.unread = 0;
    this.enabled = true;
    q(root, 'chat-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.#send();
    });
    this.input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        this.#send();
      }
    });
  }

  /** setEnabled turns sending on or off (a node without chat). */
  setEnabled(on, why = '') {
    this.enabled = on;
    this.input.disabled = !on;
    this.sendBtn.disabled = !on;
    this.input.placeholder = on ? 'Message everyone' : why;
  }

  #send() {
    const text = this.input.value;
    if (text.trim() === '') {
      return;
    }
    const n = utf8Length(text);
    if (n > CHAT_MAX_BYTES) {
      this.showError(`Message not sent: it has ${n} bytes, at most ${CHAT_MAX_BYTES} are allowed.`);
      return;
    }
    if (this.onSend(text)) {
      this.input.value = '';
      this.showError('');
    } else {
      this.showError('Message not sent: not connected. Try again in a moment.');
    }
  }

  showError(text) {
    this.errorEl.textContent = text;
    this.errorEl.hidden = !text;
  }

  /** add shows a message unless already shown; mine: sent by us. */
  add(m, mine = false) {
    if (!m || typeof m.id !== 'string' || this.messages.has(m.id) || typeof m.text !== 'string') {
      return;
    }
    this.messages.set(m.id, m);
    const item = document.createElement('li');
    item.className = mine ? 'chat-message mine' : 'chat-message';
    item.dataset.testid = 'chat-message';
    item.dataset.from = m.fromName || '';
    item.dataset.messageId = m.id;
    item.dataset.at = String(m.at || 0);
    const head = document.createElement('div');
    head.className = 'chat-head';
    const from = document.createElement('span');
    from.className = 'chat-from';
    from.dataset.testid = 'chat-from';
    from.textContent = m.fromName || '?';
    const time = document.createElement('time');
    time.className = 'chat-time';
    time.dataset.testid = 'chat-time';
    time.dateTime = new Date(m.at || 0).toISOString();
    time.textContent = timeOf(m.at || 0);
    head.append(from, ' ', time);
    const text = document.createElement('p');
    text.className = 'chat-text';
    text.dataset.testid = 'chat-text';
    text.textContent = m.text;
    item.append(head, text);
    // In time order; equal times keep arrival order.
    let before = null;
    for (const other of this.log.children) {
      if (Number(other.dataset.at) > (m.at || 0)) {
        before = other;
        break;
      }
    }
    this.log.insertBefore(item, before);
    if (before === null) {
      item.scrollIntoView({ block: 'nearest' });
    }
    if (!mine && !this.isOpen()) {
      this.unread += 1;
      this.#badge();
    }
  }

  /** read clears the unread count (the panel was opened). */
  read() {
    this.unread = 0;
    this.#badge();
    const last = this.log.lastElementChild;
    if (last) {
      last.scrollIntoView({ block: 'nearest' });
    }
    this.input.focus();
  }

  #badge() {
    this.badge.textContent = String(this.unread);
    this.badge.hidden = this.unread === 0;
  }

  /** list returns the messages shown, in order. */
  list() {
    return Array.from(this.log.children, (li) => {
      const m = this.messages.get(li.dataset.messageId);
      return { id: m.id, from: m.from, fromName: m.fromName, text: m.text, at: m.at };
    });
  }
}

/**
 * Settings is the device dialog: the cameras and microphones the browser
 * lists; picking one calls onPick(kind, deviceId) ('video' or 'audio').
 */
export class Settings {
  constructor(root, { listDevices, current, onPick }) {
    this.dialog = q(root, 'settings-dialog');
    this.camera = q(root, 'camera-select');
    this.mic = q(root, 'mic-select');
    this.errorEl = q(root, 'settings-error');
    this.listDevices = listDevices;
    this.current = current;
    q(root, 'open-settings').addEventListener('click', () => this.open());
    this.camera.addEventListener('change', () => this.#pick('video', this.camera.value));
    this.mic.addEventListener('change', () => this.#pick('audio', this.mic.value));
    this.onPick = onPick;
  }

  async open() {
    this.showError('');
    try {
      const { cameras, microphones } = await this.listDevices();
      const cur = this.current();
      this.#fill(this.camera, cameras, cur.video, 'Camera');
      this.#fill(this.mic, microphones, cur.audio, 'Microphone');
    } catch (err) {
      this.showError(`Cannot list devices: ${err.message || err.name}`);
    }
    if (!this.dialog.open) {
      this.dialog.showModal();
    }
  }

  #fill(select, devices, currentId, kind) {
    select.replaceChildren();
    devices.forEach((d, i) => {
      const opt = document.createElement('option');
      opt.value = d.deviceId;
      opt.textContent = d.label || `${kind} ${i + 1}`;
      select.append(opt);
    });
    if (currentId && devices.some((d) => d.deviceId === currentId)) {
      select.value = currentId;
    }
    select.disabled = devices.length === 0;
  }

  async #pick(kind, deviceId) {
    this.showError('');
    try {
      await this.onPick(kind, deviceId);
    } catch (err) {
      this.showError(`Cannot switch: ${err.message || err.name}`);
    }
  }

  showError(text) {
    this.errorEl.textContent = text;
    this.errorEl.hidden = !text;
  }
}
