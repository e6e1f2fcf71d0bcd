// media.js: acquiring the local camera and microphone, and the simulcast
// encodings the camera is published with.

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
 * getLocalMedia asks for camera and microphone and degrades gracefully:
 * both, then audio only, then video only. It never throws; without any
 * device (or permission) it resolves to {stream: null, error}, and the
 * caller joins without publishing (still subscribing).
 *
 * @returns {Promise<{stream: MediaStream|null, error: Error|null}>}
 */
export async function getLocalMedia() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return { stream: null, error: new Error('media devices are not available (insecure context?)') };
  }
  const attempts = [
    { audio: true, video: VIDEO },
    { audio: true, video: false },
    { audio: false, video: VIDEO },
  ];
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
