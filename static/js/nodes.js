// nodes.js: choosing the node of the next session, and the page URL's
// options (docs/protocol.md, Draining and failover; Adaptive video).

// Whether the camera is published as simulcast when the page URL does not
// say (?simulcast=1 or ?simulcast=0).
export const SIMULCAST_DEFAULT = true;

/** offSetting reads ?camera=off / ?mic=off of the page URL. */
export function offSetting(key) {
  const v = new URLSearchParams(window.location.search).get(key);
  return v === 'off' || v === '0' || v === 'false';
}

/** simulcastSetting reads ?simulcast= of the page URL (default SIMULCAST_DEFAULT). */
export function simulcastSetting() {
  const v = new URLSearchParams(window.location.search).get('simulcast');
  if (v === '1' || v === 'on' || v === 'true') {
    return true;
  }
  if (v === '0' || v === 'off' || v === 'false') {
    return false;
  }
  return SIMULCAST_DEFAULT;
}

/**
 * pickByLoad chooses among nodes by load with jitter: the lowest
 * (load + 1) * random(0.5, 1.5), so lightly loaded nodes are preferred but
 * clients that lose the same node do not all pick the same next one.
 */
export function pickByLoad(nodes) {
  let best = nodes[0];
  let bestScore = Infinity;
  for (const n of nodes) {
    const load = Number.isFinite(n.load) && n.load > 0 ? n.load : 0;
    const score = (load + 1) * (0.5 + Math.random());
    if (score < bestScore) {
      best = n;
      bestScore = score;
    }
  }
  return best;
}

/** validNodeURL accepts absolute http(s) URLs. */
export function validNodeURL(url) {
  if (typeof url !== 'string' || url === '') {
    return false;
  }
  try {
    const u = new URL(url);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}
