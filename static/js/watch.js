// watch.js: the watch page (GET /rooms/{room}/watch) plays a room over WHEP
// (docs/protocol.md, WHIP and WHEP): a receive-only offer for audio and
// video goes to /rooms/{room}/whep, with the page URL's ?participant= (the
// default is the active speaker) and, with token auth, its ?token= as the
// bearer token. The DELETE of the session's resource ends it when the page
// goes away. watch-state shows the connection state.

const GATHER_TIMEOUT_MS = 2000;

const root = document.getElementById('watch');
const video = document.querySelector('[data-testid="watch-video"]');
const stateEl = document.querySelector('[data-testid="watch-state"]');

/** setState shows the session's state (data-state) and an explanation. */
function setState(state, detail) {
  stateEl.dataset.state = state;
  stateEl.textContent = detail ? `${state}: ${detail}` : state;
}

/** gathered resolves once pc gathered its candidates (or after a timeout). */
function gathered(pc) {
  if (pc.iceGatheringState === 'complete') {
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, GATHER_TIMEOUT_MS);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') {
        clearTimeout(timer);
        resolve();
      }
    });
  });
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
  // Test hook (docs/protocol.md, page contract): the WHEP connection.
  window.confab = { pcs: { whep: pc } };
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
  await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
  setState('connecting');
  window.addEventListener('pagehide', () => {
    fetch(resource, { method: 'DELETE', headers: auth, keepalive: true }).catch(() => {});
    pc.close();
  });
}

start().catch((err) => setState('error', err.message));
