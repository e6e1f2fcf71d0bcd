// WebRTC statistics of a room page, read through getStats() of the peer
// connections the page exposes (window.confab.pcs.{publisher,subscriber}).
//
//   sampleInbound(page)        the subscriber's inbound-rtp streams, each with
//                              its participant (from the remote tiles):
//                              { at, tracks: [{ id, kind, mid, ssrc,
//                                trackIdentifier, participantId,
//                                participantName, bytesReceived,
//                                packetsReceived, packetsLost, framesDecoded,
//                                framesDropped, keyFramesDecoded, frameWidth,
//                                frameHeight, framesPerSecond, freezeCount,
//                                totalFreezesDuration, nackCount, pliCount,
//                                jitter, timestamp }] }  (null: no subscriber)
//   inboundRates(a, b)         what happened between two samples: per track
//                              kbps, fps, frames, freezes, plus totals per kind
//   measureInbound(page, ms)   two samples ms apart and their inboundRates
//   measureInboundUntil(page, { windowMs, timeout, until })
//                              measureInbound(windowMs) again and again until
//                              until(result) holds; the last result, with
//                              met (true/false) and attempts
//   sampleOutbound(page)       the publisher's outbound-rtp streams (one per
//                              simulcast layer, with rid)
//   outboundRates(a, b)        kbps and fps per outbound stream
//   selectedCandidatePair(page, pc)
//                              the nominated ICE pair: local and remote
//                              address, port, candidate type, protocol and
//                              relayProtocol (local relay candidates), RTT and
//                              availableIncomingBitrate/OutgoingBitrate
//
// Rates use the stats' own timestamps. bytesReceived/bytesSent count RTP
// payload only (no RTP/UDP/IP headers, no padding).
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** sampleInbound reads the inbound-rtp streams of the page's subscriber. */
async function sampleInbound(page, { pc = 'subscriber' } = {}) {
  return page.evaluate(async (which) => {
    const conn = window.confab && window.confab.pcs && window.confab.pcs[which];
    if (!conn) return null;
    const report = await conn.getStats();
    // The server uses the producer id as track id; the page keeps it on the
    // media element (data-producer-id) inside the participant's tile.
    const owner = (trackId) => {
      for (const el of document.querySelectorAll('[data-testid="remote-tile"] [data-producer-id]')) {
        if (el.dataset.producerId === trackId) {
          const tile = el.closest('[data-testid="remote-tile"]');
          return { participantId: tile.dataset.participantId || null, participantName: tile.dataset.participantName || null };
        }
      }
      return { participantId: null, participantName: null };
    };
    const tracks = [];
    report.forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      tracks.push({
        id: s.id,
        kind: s.kind || s.mediaType,
        mid: s.mid ?? null,
        ssrc: s.ssrc,
        trackIdentifier: s.trackIdentifier,
        ...owner(s.trackIdentifier),
        bytesReceived: s.bytesReceived || 0,
        headerBytesReceived: s.headerBytesReceived || 0,
        packetsReceived: s.packetsReceived || 0,
        packetsLost: s.packetsLost || 0,
        framesDecoded: s.framesDecoded || 0,
        framesReceived: s.framesReceived || 0,
        framesDropped: s.framesDropped || 0,
        keyFramesDecoded: s.keyFramesDecoded || 0,
        frameWidth: s.frameWidth || 0,
        frameHeight: s.frameHeight || 0,
        framesPerSecond: s.framesPerSecond || 0,
        freezeCount: s.freezeCount || 0,
        totalFreezesDuration: s.totalFreezesDuration || 0,
        nackCount: s.nackCount || 0,
        pliCount: s.pliCount || 0,
        jitter: s.jitter || 0,
        timestamp: s.timestamp,
      });
    });
    return { at: Date.now(), tracks };
  }, pc);
}

const round = (x, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

/**
 * inboundRates compares two sampleInbound results (a before b). Per track
 * (matched by stats id): seconds, kbps (payload bytes), fps (frames
 * decoded), frames, freezes (new freezeCount), packetsLost (new), and the
 * frame size and participant of b; a track missing from a counts from zero
 * (isNew). Totals: video { kbps, fps, frames, freezes, tracks } and audio
 * { kbps, tracks }, and seconds (between the two samples).
 */
function inboundRates(a, b) {
  if (!a || !b) throw new Error('inboundRates: a sample is null (no subscriber peer connection)');
  const prev = new Map(a.tracks.map((t) => [t.id, t]));
  const seconds = (b.at - a.at) / 1000;
  const tracks = b.tracks.map((t) => {
    const p = prev.get(t.id);
    const isNew = !p;
    const base = p || { bytesReceived: 0, framesDecoded: 0, freezeCount: 0, packetsLost: 0, timestamp: a.at };
    const secs = Math.max((t.timestamp - base.timestamp) / 1000, 0.001);
    return {
      id: t.id,
      kind: t.kind,
      mid: t.mid,
      trackIdentifier: t.trackIdentifier,
      participantId: t.participantId,
      participantName: t.participantName,
      isNew,
      seconds: round(secs, 2),
      kbps: round(((t.bytesReceived - base.bytesReceived) * 8) / 1000 / secs),
      fps: round((t.framesDecoded - base.framesDecoded) / secs),
      frames: t.framesDecoded - base.framesDecoded,
      freezes: t.freezeCount - base.freezeCount,
      packetsLost: t.packetsLost - base.packetsLost,
      frameWidth: t.frameWidth,
      frameHeight: t.frameHeight,
    };
  });
  const sum = (kind, key) => round(tracks.filter((t) => t.kind === kind).reduce((s, t) => s + t[key], 0));
  return {
    seconds: round(seconds, 2),
    tracks,
    video: {
      tracks: tracks.filter((t) => t.kind === 'video').length,
      kbps: sum('video', 'kbps'),
      fps: sum('video', 'fps'),
      frames: sum('video', 'frames'),
      freezes: sum('video', 'freezes'),
      packetsLost: sum('video', 'packetsLost'),
    },
    audio: {
      tracks: tracks.filter((t) => t.kind === 'audio').length,
      kbps: sum('audio', 'kbps'),
      packetsLost: sum('audio', 'packetsLost'),
    },
  };
}

/** measureInbound samples, waits ms, samples again; returns inboundRates plus both samples. */
async function measureInbound(page, ms, opts) {
  const a = await sampleInbound(page, opts);
  await sleep(ms);
  const b = await sampleInbound(page, opts);
  return { ...inboundRates(a, b), before: a, after: b };
}

/**
 * measureInboundUntil measures windows of windowMs (default 3s) back to back
 * until until(result) is true or timeout (default 20s) has passed, and
 * resolves with the last measureInbound result plus met (whether until held)
 * and attempts. It never throws on a timeout: the caller asserts on met or
 * on the numbers.
 */
async function measureInboundUntil(page, { windowMs = 3_000, timeout = 20_000, until = () => true, ...opts } = {}) {
  const deadline = Date.now() + timeout;
  let attempts = 0;
  let prev = await sampleInbound(page, opts);
  for (;;) {
    await sleep(windowMs);
    const next = await sampleInbound(page, opts);
    attempts++;
    const m = { ...inboundRates(prev, next), before: prev, after: next };
    const met = !!until(m);
    if (met || Date.now() + windowMs > deadline) return { ...m, met, attempts };
    prev = next;
  }
}

/** sampleOutbound reads the outbound-rtp streams of the page's publisher. */
async function sampleOutbound(page, { pc = 'publisher' } = {}) {
  return page.evaluate(async (which) => {
    const conn = window.confab && window.confab.pcs && window.confab.pcs[which];
    if (!conn) return null;
    const report = await conn.getStats();
    const tracks = [];
    report.forEach((s) => {
      if (s.type !== 'outbound-rtp') return;
      tracks.push({
        id: s.id,
        kind: s.kind || s.mediaType,
        mid: s.mid ?? null,
        rid: s.rid ?? null,
        ssrc: s.ssrc,
        active: s.active,
        bytesSent: s.bytesSent || 0,
        packetsSent: s.packetsSent || 0,
        framesEncoded: s.framesEncoded || 0,
        framesSent: s.framesSent || 0,
        frameWidth: s.frameWidth || 0,
        frameHeight: s.frameHeight || 0,
        framesPerSecond: s.framesPerSecond || 0,
        targetBitrate: s.targetBitrate || 0,
        qualityLimitationReason: s.qualityLimitationReason || null,
        scalabilityMode: s.scalabilityMode || null,
        nackCount: s.nackCount || 0,
        pliCount: s.pliCount || 0,
        timestamp: s.timestamp,
      });
    });
    return { at: Date.now(), tracks };
  }, pc);
}

/** outboundRates: per outbound stream kbps and fps between two samples. */
function outboundRates(a, b) {
  if (!a || !b) throw new Error('outboundRates: a sample is null (no publisher peer connection)');
  const prev = new Map(a.tracks.map((t) => [t.id, t]));
  return b.tracks.map((t) => {
    const p = prev.get(t.id) || { bytesSent: 0, framesEncoded: 0, timestamp: a.at };
    const secs = Math.max((t.timestamp - p.timestamp) / 1000, 0.001);
    return {
      id: t.id,
      kind: t.kind,
      mid: t.mid,
      rid: t.rid,
      kbps: round(((t.bytesSent - p.bytesSent) * 8) / 1000 / secs),
      fps: round((t.framesEncoded - p.framesEncoded) / secs),
      frameWidth: t.frameWidth,
      frameHeight: t.frameHeight,
      qualityLimitationReason: t.qualityLimitationReason,
    };
  });
}

/**
 * selectedCandidatePair returns the nominated, succeeded ICE candidate pair
 * of the page's peer connection pc ('subscriber' or 'publisher'):
 * { local: {address, port, candidateType, protocol}, remote: {...},
 *   currentRoundTripTime, availableIncomingBitrate, availableOutgoingBitrate,
 *   bytesReceived, bytesSent }, or null when there is none (yet).
 */
async function selectedCandidatePair(page, pc = 'subscriber') {
  return page.evaluate(async (which) => {
    const conn = window.confab && window.confab.pcs && window.confab.pcs[which];
    if (!conn) return null;
    const report = await conn.getStats();
    let pairId = null;
    report.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
    });
    let pair = pairId ? report.get(pairId) : null;
    if (!pair) {
      report.forEach((s) => {
        if (!pair && s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s;
      });
    }
    if (!pair) return null;
    const cand = (id) => {
      const c = report.get(id) || {};
      return {
        address: c.address || c.ip || null, port: c.port, candidateType: c.candidateType, protocol: c.protocol,
        relayProtocol: c.relayProtocol || null, // a local relay candidate: how the browser reaches its TURN server
      };
    };
    return {
      local: cand(pair.localCandidateId),
      remote: cand(pair.remoteCandidateId),
      currentRoundTripTime: pair.currentRoundTripTime,
      availableIncomingBitrate: pair.availableIncomingBitrate,
      availableOutgoingBitrate: pair.availableOutgoingBitrate,
      bytesReceived: pair.bytesReceived,
      bytesSent: pair.bytesSent,
    };
  }, pc);
}

module.exports = {
  sampleInbound, inboundRates, measureInbound, measureInboundUntil, sampleOutbound, outboundRates, selectedCandidatePair,
};
