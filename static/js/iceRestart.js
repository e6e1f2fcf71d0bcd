// iceRestart.js: ICE restart of a WHIP or WHEP session (RFC 9725,
// docs/protocol.md, WHIP and WHEP). The client side of a restart: the
// peer connection makes an offer with new ICE credentials, its ufrag, pwd
// and candidates go to the session's resource in a PATCH
// (application/trickle-ice-sdpfrag, If-Match: *), and the node's new
// credentials and candidates from the 200 reply replace the old ones in
// the remote answer. WHIP and WHEP renegotiate nothing else.

const GATHER_TIMEOUT_MS = 2000;

/** gathered resolves once pc gathered its candidates (or after a timeout). */
export function gathered(pc) {
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

/** lines splits an SDP into lines without their line ends. */
const lines = (sdp) => sdp.split(/\r?\n/).filter((l) => l !== '');

/**
 * fragment returns the trickle-ice-sdpfrag of an offer: its ICE
 * credentials and the first m= section (the BUNDLE transport) with its
 * mid and candidates.
 */
export function fragment(sdp) {
  const out = [];
  let section = 0;
  for (const l of lines(sdp)) {
    if (l.startsWith('m=')) {
      section += 1;
      if (section === 1) out.push(l);
    } else if (section === 1 && /^a=(ice-ufrag|ice-pwd|mid|candidate):/.test(l)) {
      out.push(l);
    }
  }
  // RFC 8840: the credentials lead the fragment.
  out.sort((a, b) => Number(!a.startsWith('a=ice-')) - Number(!b.startsWith('a=ice-')));
  return `${out.join('\r\n')}\r\n`;
}

/**
 * withFragment returns the answer sdp with the ICE credentials and
 * candidates of a restart's reply fragment in place of its own (the
 * candidates go to the first m= section).
 */
export function withFragment(sdp, frag) {
  const f = lines(frag);
  const ufrag = f.find((l) => l.startsWith('a=ice-ufrag:'));
  const pwd = f.find((l) => l.startsWith('a=ice-pwd:'));
  const cands = f.filter((l) => l.startsWith('a=candidate:'));
  if (!ufrag || !pwd) {
    throw new Error('ICE restart reply without ice-ufrag or ice-pwd');
  }
  const out = [];
  let section = 0;
  for (const l of lines(sdp)) {
    if (l.startsWith('m=')) {
      section += 1;
    }
    if (l.startsWith('a=candidate:') || l === 'a=end-of-candidates') {
      continue;
    }
    if (l.startsWith('a=ice-ufrag:')) {
      out.push(ufrag);
    } else if (l.startsWith('a=ice-pwd:')) {
      out.push(pwd);
      if (section === 1) out.push(...cands);
    } else {
      out.push(l);
    }
  }
  return `${out.join('\r\n')}\r\n`;
}

/**
 * restartIce restarts the ICE of pc, whose session's resource URL is
 * resource (headers: e.g. Authorization). It resolves with the session's
 * new ETag; a refused restart rolls the offer back (the old ICE session
 * stays) and rejects with the HTTP status.
 */
export async function restartIce(pc, resource, headers = {}) {
  pc.restartIce(); // the next offer has new ICE credentials
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const res = await fetch(resource, {
    method: 'PATCH',
    headers: { 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': '*', ...headers },
    body: fragment(pc.localDescription.sdp),
  });
  if (res.status !== 200) {
    await pc.setLocalDescription({ type: 'rollback' });
    throw new Error(`ICE restart refused: ${res.status}`);
  }
  const reply = await res.text();
  await pc.setRemoteDescription({ type: 'answer', sdp: withFragment(pc.currentRemoteDescription.sdp, reply) });
  return res.headers.get('ETag');
}
