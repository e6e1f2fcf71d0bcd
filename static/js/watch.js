// watch.js: the watch page (GET /rooms/{room}/watch) plays a room over WHEP
// (docs/protocol.md, WHIP and WHEP): a receive-only offer for audio and
// video goes to /rooms/{room}/whep, with the page URL's ?participant= (the
// default is the active speaker) and, with token auth, its ?token= as the
// bearer token. The DELETE of the session's resource ends it when the page
// goes away. watch-state shows the connection state. When ICE disconnects
// or fails, the page restarts it (PATCH with new credentials,
// iceRestart.js), up to MAX_RESTARTS times in a row.

import { gathered, restartIce } from './iceRestart.js';

// MAX_RESTARTS bounds the ICE restarts after a failure in a row.
const MAX_RESTARTS = 3;

const root = document.getElementById('watch');
const video = document.querySelector('[data-testid="watch-video"]');
const stateEl = document.querySelector('[data-testid="watch-state"]');

/** setState shows the session's state (data-state) and an explanation. */
function setState(state, detail) {
  stateEl.dataset.state = state;
  stateEl.textContent = detail ? `${state}: ${detail}` : state;
}

async function start() {
  const params = new URLSearchParams(window.location.search);
  const endpoint = new URL(`/rooms/${encodeURIComponent(root.dataset.room)}/whep`, window.location.href);
  const follow = params.get('participant');
  if (follow) {
    endpoint.searchParams.set('participant', follow);
  }
  const auth = {};
  if (params.get('token')) {
    auth.Authorization = `Bearer ${params.get('token')}`;
  }

  const pc = new RTCPeerConnection();
  // Test hooks (docs/protocol.md, page contract): the WHEP connection,
  // its resource URL, the number of ICE restarts done and a restart on
  // demand.
  const hooks = { pcs: { whep: pc }, resource: null, iceRestarts: 0, restartIce: null };
  window.confab = hooks;
  pc.addTransceiver('audio', { direction: 'recvonly' });
  pc.addTransceiver('video', { direction: 'recvonly' });
  const stream = new MediaStream();
  pc.addEventListener('track', (e) => {
    stream.addTrack(e.track);
    video.srcObject = stream;
  });
  pc.addEventListener('connectionstatechange', () => setState(pc.connectionState));

  setState('offering');
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const res = await fetch(endpoint, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp', ...auth },
    body: pc.localDescription.sdp,
  });
  if (res.status !== 201) {
    let detail = `${res.status}`;
    try {
      detail += ` ${(await res.json()).message}`;
    } catch {
      // not JSON: the status says enough
    }
    pc.close();
    setState('error', detail);
    return;
  }
  const resource = new URL(res.headers.get('Location'), endpoint);
  hooks.resource = resource.toString();
  await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
  setState('connecting');
  let restarting = null;
  let failures = 0;
  hooks.restartIce = () => {
    if (!restarting) {
      restarting = restartIce(pc, resource, auth)
        .then((etag) => {
          hooks.iceRestarts += 1;
          return etag;
        })
        .finally(() => {
          restarting = null;
        });
    }
    return restarting;
  };
  const recover = () => {
    if (failures >= MAX_RESTARTS) return;
    failures += 1;
    hooks.restartIce().catch((err) => setState('failed', err.message));
  };
  // A browser reports "disconnected" some seconds after the node stopped
  // answering (and "failed" much later); the node ends a session whose ICE
  // stays down for its restart window (30 s by default). Restarting at
  // once keeps the gap in the video short.
  pc.addEventListener('iceconnectionstatechange', () => {
    console.info(`watch: ICE ${pc.iceConnectionState}`);
    switch (pc.iceConnectionState) {
      case 'connected':
      case 'completed':
        failures = 0;
        break;
      case 'disconnected':
      case 'failed':
        recover();
        break;
      default:
    }
  });
  window.addEventListener('pagehide', () => {
    fetch(resource, { method: 'DELETE', headers: auth, keepalive: true }).catch(() => {});
    pc.close();
  });
}

start().catch((err) => setState('error', err.message));
