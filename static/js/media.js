// media.js: acquiring the local camera and microphone.

const VIDEO = { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 24 } };

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
