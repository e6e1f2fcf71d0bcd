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

/**
 * NodeSet is what the page knows of the cluster's nodes, for failover and
 * placement (docs/protocol.md, Draining and failover): the known nodes with
 * their load, those that failed since the last successful join, those that
 * asked us to leave (draining), and the node a placement "move" named for
 * the next session. The node that served the page (home) is reachable at
 * the page's origin, whatever URL the cluster gives for it.
 */
export class NodeSet {
  /** @param {{id: string, url: string}} home */
  constructor(home) {
    this.home = home;
    /** @type {{id: string, url: string, load: number}[]} */
    this.list = [{ ...home, load: 0 }];
    this.failed = new Set(); // node ids that failed since the last join
    this.draining = new Set(); // node ids that asked us to leave
    this.placedOn = null; // node a placement "move" sent the next session to
  }

  /** node turns a server-given entry into a known node, or null. */
  #node(n) {
    if (!n || typeof n.id !== 'string' || n.id === '') {
      return null;
    }
    const url = n.id === this.home.id ? this.home.url : n.url;
    if (!validNodeURL(url)) {
      return null;
    }
    return { id: n.id, url, load: Number.isFinite(n.load) ? n.load : 0 };
  }

  /** set replaces the known nodes with a server-provided list (kept if it holds none). */
  set(list) {
    if (!Array.isArray(list)) {
      return;
    }
    const nodes = [];
    for (const entry of list) {
      const n = this.#node(entry);
      if (n && !nodes.some((m) => m.id === n.id)) {
        nodes.push(n);
      }
    }
    if (nodes.length > 0) {
      this.list = nodes;
    }
  }

  /**
   * place remembers the first usable node of a placement "move" as the
   * next session's node (and as known); it returns it, or null.
   */
  place(list) {
    for (const entry of Array.isArray(list) ? list : []) {
      const n = this.#node(entry);
      if (n) {
        if (!this.list.some((m) => m.id === n.id)) {
          this.list = [...this.list, n];
        }
        this.placedOn = n;
        return n;
      }
    }
    return null;
  }

  /**
   * next returns the node of the next session and whether placement named
   * it: the placed node if any, else one chosen by load with jitter
   * (pickByLoad) among the known nodes that neither failed since the last
   * successful join nor are draining; when none is left, among those that
   * are not draining (the node that just failed included: maybe it was a
   * blip); when only draining nodes are known, among all of them (one may
   * be back by now). The chosen node may still place us elsewhere.
   */
  next() {
    const placed = this.placedOn;
    this.placedOn = null;
    if (placed) {
      return { node: placed, placed: true };
    }
    let pool = this.list.filter((n) => !this.failed.has(n.id) && !this.draining.has(n.id));
    if (pool.length === 0) {
      this.failed.clear();
      pool = this.list.filter((n) => !this.draining.has(n.id));
    }
    if (pool.length === 0) {
      this.draining.clear();
      pool = this.list;
    }
    return { node: pickByLoad(pool), placed: false };
  }

  /** avoid lists the nodes a join on node id should tell the server to avoid. */
  avoid(id) {
    return [...new Set([...this.failed, ...this.draining])].filter((n) => n !== id);
  }

  /** joined records a successful join on node id. */
  joined(id) {
    this.failed.clear();
    if (id) {
      this.draining.delete(id);
    }
  }

  /** copy returns the known nodes for tests (window.confab.nodes). */
  copy() {
    return this.list.map((n) => ({ ...n }));
  }
}
