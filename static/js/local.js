// local.js: the participant's own media: microphone, camera and screen
// share, their on/off state, and device switching.
//
// Turning the microphone off stops sending it (the sender's track is
// replaced by none) and announces it; the track is kept so that unmuting
// is instant. Turning the camera off stops sending and releases the camera
// (its light goes off); turning it on opens it again. A screen share is a
// separate m-line of the publisher connection; it ends from the button or
// from the browser's own "stop sharing" (the track ends). None of these
// renegotiates except starting and stopping a share. The state survives
// failover: the next session's publisher gets the same tracks.

import { getLocalMedia, openDevice, openScreen, devicePrefs, rememberDevice } from './media.js';

export class LocalMedia {
  /**
   * @param {{audioOff: boolean, videoOff: boolean, onChange: (state: object) => void}} opts
   */
  constructor({ audioOff = false, videoOff = false, onChange = () => {} } = {}) {
    this.audio = null; // microphone track (kept while muted)
    this.video = null; // camera track (null while the camera is off)
    this.screen = null; // screen track while sharing
    this.audioMuted = audioOff;
    this.videoMuted = videoOff;
    this.publisher = null;
    this.simulcast = false;
    this.onChange = onChange;
    this.onScreen = () => {}; // (track|null) when sharing starts or stops
    this.busy = Promise.resolve(); // toggles run one at a time
    // What the access token lets us publish (version 4 "grants").
    this.allowed = { microphone: true, camera: true, screen: true };
  }

  /**
   * allow applies the sources the access token allows: a source it does
   * not allow is turned off (devices released) and its button disabled.
   */
  allow({ microphone, camera, screen }) {
    this.allowed = { microphone, camera, screen };
    if (!microphone) {
      this.audioMuted = true;
      if (this.audio) {
        this.audio.stop();
        this.audio = null;
      }
    }
    if (!camera) {
      this.videoMuted = true;
      if (this.video) {
        this.video.stop();
        this.video = null;
      }
    }
    this.onChange(this.state());
  }

  /** state is what the controls and the server are told. */
  state() {
    const media = !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia);
    return {
      audioMuted: this.audioMuted,
      videoMuted: this.videoMuted,
      sharing: this.screen !== null,
      canAudio: media && this.allowed.microphone,
      canVideo: media && this.allowed.camera,
      canShare: !!(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia) && this.publisher !== null && this.allowed.screen,
    };
  }

  /**
   * acquire opens the microphone (even when it starts muted: unmuting is
   * then instant) and, unless the camera starts off, the camera. Resolves
   * to the getUserMedia error, if any.
   */
  async acquire() {
    const { stream, error } = await getLocalMedia({ audio: true, video: !this.videoMuted });
    if (stream) {
      this.audio = stream.getAudioTracks()[0] || null;
      this.video = stream.getVideoTracks()[0] || null;
    }
    if (!this.audio) {
      this.audioMuted = true;
    }
    if (!this.video) {
      this.videoMuted = true;
    }
    return error;
  }

  /**
   * adopt sends the tracks that acquire opened after the session had
   * started (and shows the new state).
   */
  adopt() {
    return this.#serial(async () => {
      if (this.publisher) {
        await this.publisher.setTrack('audio', this.sending().audio);
        await this.publisher.setTrack('video', this.sending().video);
      }
      this.onChange(this.state());
    });
  }

  /** sending returns the tracks to send: muted ones as null. */
  sending() {
    return {
      audio: this.audioMuted ? null : this.audio,
      video: this.videoMuted ? null : this.video,
    };
  }

  /**
   * publish starts a session's publisher with the current tracks (and the
   * screen share, if one is running).
   */
  async publish(publisher, { simulcast, sources }) {
    this.publisher = publisher;
    this.simulcast = simulcast;
    this.onChange(this.state());
    await publisher.start({ ...this.sending(), simulcast, sources, allowed: this.allowed });
    if (this.screen && this.publisher === publisher) {
      await publisher.startScreen(this.screen, { simulcast });
    }
  }

  /** detach forgets the session's publisher (it was closed). */
  detach() {
    this.publisher = null;
  }

  #serial(fn) {
    const run = this.busy.then(fn);
    this.busy = run.catch(() => {});
    return run;
  }

  toggleAudio() {
    return this.#serial(async () => {
      if (this.audioMuted) {
        if (!this.audio || this.audio.readyState === 'ended') {
          this.audio = await openDevice('audio', '');
        }
        this.audioMuted = false;
      } else {
        this.audioMuted = true;
      }
      if (this.publisher) {
        await this.publisher.setTrack('audio', this.sending().audio);
      }
      this.onChange(this.state());
    });
  }

  toggleVideo() {
    return this.#serial(async () => {
      if (this.videoMuted) {
        this.video = await openDevice('video', '');
        this.videoMuted = false;
        if (this.publisher) {
          await this.publisher.setTrack('video', this.video);
        }
      } else {
        this.videoMuted = true;
        if (this.publisher) {
          await this.publisher.setTrack('video', null);
        }
        if (this.video) {
          this.video.stop();
          this.video = null;
        }
      }
      this.onChange(this.state());
    });
  }

  toggleShare() {
    return this.#serial(async () => {
      if (this.screen) {
        await this.#stopShare();
        return;
      }
      const track = await openScreen();
      this.screen = track;
      track.addEventListener('ended', () => {
        // The browser's own "stop sharing".
        this.#serial(async () => {
          if (this.screen === track) {
            await this.#stopShare();
          }
        });
      });
      this.onScreen(track);
      this.onChange(this.state());
      if (this.publisher) {
        await this.publisher.startScreen(track, { simulcast: this.simulcast });
      }
    });
  }

  async #stopShare() {
    const track = this.screen;
    this.screen = null;
    if (track) {
      track.stop();
    }
    this.onScreen(null);
    this.onChange(this.state());
    if (this.publisher) {
      await this.publisher.stopScreen();
    }
  }

  /** current returns the deviceIds in use (or remembered). */
  current() {
    const prefs = devicePrefs();
    const id = (t) => (t ? t.getSettings().deviceId || '' : '');
    return { audio: id(this.audio) || prefs.microphone, video: id(this.video) || prefs.camera };
  }

  /**
   * pickDevice switches the camera ('video') or microphone ('audio') to
   * deviceId without renegotiating (replaceTrack) and remembers it. A
   * camera that is off is only remembered.
   */
  pickDevice(kind, deviceId) {
    return this.#serial(async () => {
      rememberDevice(kind === 'video' ? 'camera' : 'microphone', deviceId);
      if (kind === 'video' && this.videoMuted) {
        return;
      }
      // The old device is released first: some (cameras on phones,
      // Chromium's fake devices) stop delivering frames while another
      // one is open.
      const old = kind === 'video' ? this.video : this.audio;
      if (old) {
        old.stop();
      }
      let track;
      try {
        track = await openDevice(kind, deviceId);
      } catch (err) {
        track = await openDevice(kind, old ? old.getSettings().deviceId : '');
        await this.#setDevice(kind, track);
        throw err;
      }
      await this.#setDevice(kind, track);
    });
  }

  async #setDevice(kind, track) {
    if (kind === 'video') {
      this.video = track;
    } else {
      this.audio = track;
    }
    if (this.publisher) {
      await this.publisher.setTrack(kind, this.sending()[kind]);
    }
    this.onChange(this.state());
  }

  /** stop releases every device. */
  stop() {
    for (const t of [this.audio, this.video, this.screen]) {
      if (t) {
        t.stop();
      }
    }
  }
}
