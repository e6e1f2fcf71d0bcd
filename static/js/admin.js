// admin.js: what an admin (version 4, token with the admin grant) sees and
// does on the room page, and what any participant does when an admin acts:
// the moderation buttons of the people panel (mute microphone or camera,
// remove), lock / unlock and end for everyone; a "moderated" message mutes
// our own device or shows the room's lock (docs/protocol.md, Moderation).

export class AdminControls {
  /**
   * @param {{root: HTMLElement, peopleList: object, local: object,
   *   notice: (text: string, ms: number) => void,
   *   send: (fields: object) => boolean}} deps
   */
  constructor({ root, peopleList, local, notice, send }) {
    this.root = root;
    this.peopleList = peopleList;
    this.local = local;
    this.notice = notice;
    this.send = send;
    this.admin = false;
    this.locked = false;
    this.bar = root.querySelector('[data-testid="admin-bar"]');
    this.lockBtn = root.querySelector('[data-testid="admin-lock"]');
    this.badge = root.querySelector('[data-testid="room-locked"]');
    peopleList.onModerate = (action, id, kind) => this.#moderate(action, id, kind);
    this.lockBtn.addEventListener('click', () => this.#moderate(this.locked ? 'unlock' : 'lock'));
    root.querySelector('[data-testid="admin-end"]').addEventListener('click', () => this.#moderate('end'));
  }

  /** start applies a session's "joined": whether we are admin, whether the room is locked. */
  start(admin, locked) {
    this.admin = admin;
    this.peopleList.setAdmin(admin);
    this.bar.hidden = !admin;
    this.#setLocked(locked);
  }

  /** onModerated applies an admin's action: our mute, or the room's lock. */
  onModerated(m) {
    if (!m) {
      return;
    }
    switch (m.action) {
      case 'lock':
      case 'unlock':
        this.#setLocked(m.action === 'lock');
        this.notice(`${m.by} ${m.action}ed the room`, 4000);
        break;
      case 'mute': {
        const st = this.local.state();
        if (m.kind === 'audio' && !st.audioMuted) {
          this.local.toggleAudio().catch((err) => console.warn('mute', err));
        } else if (m.kind === 'video' && !st.videoMuted) {
          this.local.toggleVideo().catch((err) => console.warn('camera off', err));
        }
        this.notice(`${m.by} turned off your ${m.kind === 'audio' ? 'microphone' : 'camera'}`, 6000);
        break;
      }
      default:
    }
  }

  #setLocked(on) {
    this.locked = on;
    this.badge.hidden = !on;
    this.lockBtn.setAttribute('aria-pressed', String(on));
    this.lockBtn.textContent = on ? 'Unlock room' : 'Lock room';
  }

  /** #moderate sends an admin's action ("moderate"). */
  #moderate(action, participantId, kind) {
    if (!this.admin) {
      return;
    }
    const fields = { action };
    if (participantId) {
      fields.participantId = participantId;
    }
    if (kind) {
      fields.kind = kind;
    }
    this.send(fields);
  }
}
