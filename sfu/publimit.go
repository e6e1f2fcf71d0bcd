package sfu

import (
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/sdp/v3"
	"golang.org/x/time/rate"
)

// Abuse limits of the media path: the publish bitrate cap of a participant
// and the accounting of datagrams nobody asked for.
//
// Every RTP packet a participant publishes (all its tracks and simulcast
// layers together, RTP header included) takes its size from the
// participant's token bucket (publishLimit) before it reaches its
// producer; a packet the bucket cannot pay for is dropped and counted. The
// bucket refills at Config.MaxPublishBitrate plus publishHeadroom and
// holds publishBurst of the cap, so a publisher that stays under the cap
// (the browser is told it in the answer: b=AS and b=TIAS on each video
// m-line) never loses a packet to it.

const (
	// minPublishBitrate is the smallest accepted Config.MaxPublishBitrate
	// (100 kbit/s: audio and a small video layer).
	minPublishBitrate = 100_000
	// publishHeadroom is the share added to the cap for the bucket's refill
	// rate: encoders overshoot their target for a while, and
	// retransmissions and header bytes come on top.
	publishHeadroom = 0.25
	// publishBurst is how much of the cap the bucket holds: a keyframe
	// after a quiet stretch passes whole.
	publishBurst = time.Second
	// abuseLogInterval is the least time between two log lines about one
	// publisher's dropped packets, and between two about unhandled
	// datagrams.
	abuseLogInterval = 10 * time.Second
)

// publishLimit is a participant's publish token bucket. Safe for
// concurrent use by the participant's track readers; allow allocates
// nothing.
type publishLimit struct {
	rate  float64 // bytes per nanosecond
	depth float64 // bytes

	mu     sync.Mutex // guards tokens and last
	tokens float64
	last   int64 // unix nanoseconds of the latest refill

	dropped, droppedBytes atomic.Uint64
	logLimit              *rate.Limiter // drop log lines
}

// newPublishLimit returns the bucket of a bitsPerSecond cap, full; nil
// (no limit) when bitsPerSecond is not positive.
func newPublishLimit(bitsPerSecond int) *publishLimit {
	if bitsPerSecond <= 0 {
		return nil
	}
	bytesPerSecond := float64(bitsPerSecond) / 8
	depth := bytesPerSecond * publishBurst.Seconds()
	return &publishLimit{
		rate:     bytesPerSecond * (1 + publishHeadroom) / float64(time.Second),
		depth:    depth,
		tokens:   depth,
		logLimit: rate.NewLimiter(rate.Every(abuseLogInterval), 1),
	}
}

// allow takes n bytes at now (unix nanoseconds) from the bucket; false
// (counted as dropped) when it holds fewer. A nil limit allows everything.
func (l *publishLimit) allow(n int, now int64) bool {
	if l == nil {
		return true
	}
	l.mu.Lock()
	if l.last == 0 {
		l.last = now
	}
	if d := now - l.last; d > 0 {
		l.tokens = min(l.depth, l.tokens+float64(d)*l.rate)
		l.last = now
	}
	ok := l.tokens >= float64(n)
	if ok {
		l.tokens -= float64(n)
	}
	l.mu.Unlock()
	if !ok {
		l.dropped.Add(1)
		l.droppedBytes.Add(uint64(n))
	}
	return ok
}

// PublishDropped returns how many of the participant's published RTP
// packets (and their bytes, headers included) were dropped because they
// exceeded Config.MaxPublishBitrate. Addition to the spec.
func (p *Participant) PublishDropped() (packets, bytes uint64) {
	if p.pubLimit == nil {
		return 0, 0
	}
	return p.pubLimit.dropped.Load(), p.pubLimit.droppedBytes.Load()
}

// admitPublished decides whether a packet of n bytes the participant
// published is forwarded; a drop is counted in the engine's stats and
// logged at most once per abuseLogInterval per participant.
func (p *Participant) admitPublished(n int, now int64) bool {
	if p.pubLimit.allow(n, now) {
		return true
	}
	p.e.stats.count(countPublishDropped)
	p.e.stats.events[countPublishDroppedBytes].Add(uint64(n))
	if p.pubLimit.logLimit.Allow() {
		packets, bytes := p.PublishDropped()
		p.log.Warn("publish bitrate over the cap, dropping packets", "max_bitrate", p.e.cfg.MaxPublishBitrate,
			"dropped_packets", packets, "dropped_bytes", bytes)
	}
	return false
}

// announceBitrate adds the publish cap to every video m-line of a
// publisher answer (b=AS in kbit/s and b=TIAS in bit/s), so that the
// browser's encoder stays under it. The answer is returned unchanged when
// there is no cap or it does not parse.
func announceBitrate(answer string, bitsPerSecond int) string {
	if bitsPerSecond <= 0 {
		return answer
	}
	var desc sdp.SessionDescription
	if err := desc.UnmarshalString(answer); err != nil {
		return answer
	}
	for _, m := range desc.MediaDescriptions {
		if m.MediaName.Media != "video" || m.MediaName.Port.Value == 0 {
			continue
		}
		kept := m.Bandwidth[:0]
		for _, b := range m.Bandwidth {
			if b.Type != "AS" && b.Type != "TIAS" {
				kept = append(kept, b)
			}
		}
		m.Bandwidth = append(kept,
			sdp.Bandwidth{Type: "AS", Bandwidth: uint64(bitsPerSecond+999) / 1000},
			sdp.Bandwidth{Type: "TIAS", Bandwidth: uint64(bitsPerSecond)})
	}
	out, err := desc.Marshal()
	if err != nil {
		return answer
	}
	return string(out)
}

// unhandledLog counts datagrams on the media socket that the ICE mux could
// not route (neither STUN of a known session nor anything from a known
// address) and logs their number at most once per abuseLogInterval.
type unhandledLog struct {
	stats *engineStats
	log   func(count uint64, last netip.AddrPort, sample string)
	limit *rate.Limiter

	mu      sync.Mutex // guards pending
	pending uint64     // datagrams since the last log line
}

// packet is the ICE mux's OnUnhandledPacket callback; it never blocks
// (the log line is written at most once per interval).
func (u *unhandledLog) packet(data []byte, from netip.AddrPort) {
	u.stats.count(countUnhandledDatagram)
	u.mu.Lock()
	u.pending++
	pending := u.pending
	logNow := u.limit.Allow()
	if logNow {
		u.pending = 0
	}
	u.mu.Unlock()
	if logNow {
		u.log(pending, from, sampleBytes(data))
	}
}

// sampleBytes is the first bytes of a datagram in hex, for the log.
func sampleBytes(b []byte) string {
	const max = 8
	var sb strings.Builder
	for i, c := range b {
		if i == max {
			sb.WriteString("...")
			break
		}
		if c < 16 {
			sb.WriteByte('0')
		}
		sb.WriteString(strconv.FormatUint(uint64(c), 16))
	}
	return sb.String()
}
