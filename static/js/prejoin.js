// prejoin.js: the pre-join screen of a room page opened without a name:
// a camera preview, a microphone level meter, and switches to join with
// the camera or the microphone off. Joining submits the form, which
// reloads the page with ?name= (plus camera=off / mic=off when switched
// off); the room page then opens the devices again (the remembered ones,
// see media.js). Hooks for tests: prejoin-video, prejoin-mic-level,
// prejoin-camera, prejoin-mic (docs/protocol.md).

import { getLocalMedia } from './media.js';

function q(testid) {
  return document.querySelector(`[data-testid="${testid}"]`);
}

async function main() {
  const form = document.getElementById('prejoin-form');
  const video = q('prejoin-video');
  const meter = q('prejoin-mic-level');
  const camera = q('prejoin-camera');
  const mic = q('prejoin-mic');
  const cameraOff = q('prejoin-camera-off');
  if (!form || !video) {
    return;
  }
  const hidden = (name) => form.querySelector(`input[type="hidden"][name="${name}"]`);
  const sync = () => {
    hidden('camera').disabled = camera.checked;
    hidden('mic').disabled = mic.checked;
    video.hidden = !camera.checked;
    cameraOff.hidden = camera.checked;
  };
  camera.addEventListener('change', sync);
  mic.addEventListener('change', sync);
  sync();

  const { stream } = await getLocalMedia({ audio: true, video: true });
  if (!stream) {
    return;
  }
  video.srcObject = stream;
  video.play().catch(() => {});
  window.addEventListener('pagehide', () => stream.getTracks().forEach((t) => t.stop()));
  const track = stream.getAudioTracks()[0];
  if (!track || typeof AudioContext === 'undefined') {
    return;
  }
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 512;
  ctx.createMediaStreamSource(new MediaStream([track])).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const tick = () => {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const v of samples) {
      sum += v * v;
    }
    const rms = Math.sqrt(sum / samples.length);
    // Smoothed, scaled so that speech sits in the middle of the meter.
    const level = mic.checked ? Math.min(1, rms * 4) : 0;
    meter.value = 0.7 * meter.value + 0.3 * level;
  };
  setInterval(tick, 100);
  ctx.resume().catch(() => {});
}

main();
