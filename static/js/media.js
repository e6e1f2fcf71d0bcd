// media.js: acquiring the local camera, microphone and screen, the devices
// the user picked (remembered in localStorage), and the simulcast encodings
// the camera and the screen are published with.

// The camera is captured at up to 1280x720 (ideal, not exact: a smaller
// camera is fine) so that simulcast has a full-resolution layer to offer.
const VIDEO = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 24 } };

/**
 * SIMULCAST_LAYERS are the encodings of a simulcast camera, lowest first.
 * The RIDs are the server's convention (docs/protocol.md, Simulcast):
 * "q" quarter, "h" half and "f" full capture resolution.
 */
export const SIMULCAST_LAYERS = Object.freeze([
  Object.freeze({ rid: 'q', scaleResolutionDownBy: 4 }),
  Object.freeze({ rid: 'h', scaleResolutionDownBy: 2 }),
  Object.freeze({ rid: 'f', scaleResolutionDownBy: 1 }),
]);

/**
 * MIN_LAYER_HEIGHT: no layer is sent smaller than this many pixels high;
 * a capture too small for three layers gets two (h, f) or none.
 */
export const MIN_LAYER_HEIGHT = 135;

/**
 * maxBitrateFor is the bitrate cap (bit/s) of a layer of that height. The
 * lowest layer is kept at 100 kbit/s: with audio and packet overhead,
 * three of them fit a 600 kbit/s downlink.
 */
export function maxBitrateFor(height) {
  if (height <= 200) {
    return 100_000;
  }
  if (height <= 400) {
    return 500_000;
  }
  return 1_700_000;
}

/**
 * simulcastEncodings returns the sendEncodings for a camera captured
 * captureHeight pixels high: the layers of SIMULCAST_LAYERS that are at
 * least MIN_LAYER_HEIGHT high (540p and more: q, h and f, e.g. 180, 360
 * and 720 for 720p; 270p to 539p: h and f; below: none), lowest first,
 * each with maxBitrateFor its height. It returns null when fewer than two
 * layers remain (or the height is unknown): publish a single encoding then.
 */
export function simulcastEncodings(captureHeight) {
  if (!Number.isFinite(captureHeight) || captureHeight <= 0) {
    return null;
  }
  const layers = SIMULCAST_LAYERS
    .filter((l) => captureHeight / l.scaleResolutionDownBy >= MIN_LAYER_HEIGHT)
    .map((l) => ({
      rid: l.rid,
      scaleResolutionDownBy: l.scaleResolutionDownBy,
      maxBitrate: maxBitrateFor(captureHeight / l.scaleResolutionDownBy),
    }));
  return layers.length >= 2 ? layers : null;
}

/**
 * screenEncodings returns the sendEncodings of a screen captured
 * captureHeight pixels high: "h" (half) and "f" (full) when the half is at
 * least 270 px high (a capture of 540 px and more), else null (one
 * encoding). Text stays sharp in "f"; a narrow viewer gets "h".
 */
export function screenEncodings(captureHeight) {
  if (!Number.isFinite(captureHeight) || captureHeight < 540) {
    return null;
  }
  return [
    { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 600_000 },
    { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 2_500_000 },
  ];
}

// localStorage keys of the devices the user picked.
const PREF_CAMERA = 'confab.camera';
const PREF_MIC = 'confab.microphone';

function readPref(key) {
  try {
    return window.localStorage.getItem(key) || '';
  } catch {
    return '';
  }
}

function writePref(key, value) {
  try {
    if (value) {
      window.localStorage.setItem(key, value);
    } else {
      window.localStorage.removeItem(key);
    }
  } catch {
    // storage disabled: the choice lasts for this page only
  }
}

/** devicePrefs returns the remembered deviceIds ('' when none). */
export function devicePrefs() {
  return { camera: readPref(PREF_CAMERA), microphone: readPref(PREF_MIC) };
}

/** rememberDevice stores the deviceId picked for kind ('camera' or 'microphone'). */
export function rememberDevice(kind, deviceId) {
  writePref(kind === 'camera' ? PREF_CAMERA : PREF_MIC, deviceId);
}

/** videoConstraints are the camera constraints: deviceId exactly, if given. */
export function videoConstraints(deviceId) {
  return deviceId ? { ...VIDEO, deviceId: { exact: deviceId } } : VIDEO;
}

/** audioConstraints are the microphone constraints: deviceId exactly, if given. */
export function audioConstraints(deviceId) {
  return deviceId ? { deviceId: { exact: deviceId } } : true;
}

/**
 * openDevice returns a new track of the camera ('video') or microphone
 * ('audio') with that deviceId ('' for the remembered or default one).
 */
export async function openDevice(kind, deviceId) {
  const prefs = devicePrefs();
  const id = deviceId || (kind === 'video' ? prefs.camera : prefs.microphone);
  const exact = kind === 'video' ? { video: videoConstraints(id) } : { audio: audioConstraints(id) };
  try {
    return (await navigator.mediaDevices.getUserMedia(exact)).getTracks()[0];
  } catch (err) {
    if (deviceId || !id) {
      throw err;
    }
    // The remembered device is gone: any one.
    const any = kind === 'video' ? { video: VIDEO } : { audio: true };
    return (await navigator.mediaDevices.getUserMedia(any)).getTracks()[0];
  }
}

/** listDevices returns the cameras and microphones the browser lists. */
export async function listDevices() {
  const all = await navigator.mediaDevices.enumerateDevices();
  return {
    cameras: all.filter((d) => d.kind === 'videoinput'),
    microphones: all.filter((d) => d.kind === 'audioinput'),
  };
}

/**
 * openScreen asks for a screen, window or tab; its track has the content
 * hint "text" (the encoder keeps resolution and sharp edges over motion).
 */
export async function openScreen() {
  const stream = await navigator.mediaDevices.getDisplayMedia({
    video: { width: { max: 1920 }, height: { max: 1080 }, frameRate: { max: 15 } },
    audio: false,
  });
  const track = stream.getVideoTracks()[0];
  if ('contentHint' in track) {
    track.contentHint = 'text';
  }
  return track;
}

/**
 * getLocalMedia asks for camera and microphone (the remembered devices
 * first; want.audio / want.video false skips one) and degrades gracefully:
 * both, then audio only, then video only. It never throws; without any
 * device (or permission) it resolves to {stream: null, error}, and the
 * caller joins without publishing (still subscribing).
 *
 * @returns {Promise<{stream: MediaStream|null, error: Error|null}>}
 */
export async function getLocalMedia(want = { audio: true, video: true }) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return { stream: null, error: new Error('media devices are not available (insecure context?)') };
  }
  if (!want.audio && !want.video) {
    return { stream: null, error: null };
  }
  const prefs = devicePrefs();
  const audio = want.audio;
  const video = want.video ? VIDEO : false;
  const attempts = [];
  if (prefs.camera || prefs.microphone) {
    // The remembered devices first.
    attempts.push({ audio: audio && audioConstraints(prefs.microphone), video: video && videoConstraints(prefs.camera) });
  }
  attempts.push({ audio, video });
  if (audio && video) {
    attempts.push({ audio, video: false }, { audio: false, video });
  }
  let lastError = null;
  for (const constraints of attempts) {
    try {
      const stream = await navigator.mediaDevices.getUserMedia(constraints);
      return { stream, error: null };
    } catch (err) {
      lastError = err;
    }
  }
  return { stream: null, error: lastError };
}

/** describeMediaError turns a getUserMedia error into a short sentence. */
export function describeMediaError(err) {
  if (!err) {
    return '';
  }
  switch (err.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return 'Camera and microphone access was denied: you can watch and listen, but others will not see or hear you.';
    case 'NotFoundError':
    case 'OverconstrainedError':
      return 'No camera or microphone found: you can watch and listen, but others will not see or hear you.';
    default:
      return `Camera and microphone unavailable (${err.message || err.name}): joining without publishing.`;
  }
}
