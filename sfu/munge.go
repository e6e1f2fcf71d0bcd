package sfu

import "github.com/pion/rtp"

// munger rewrites one consumer's view of a layered producer so that the
// receiver sees a single continuous stream: sequence numbers continue
// across layer switches and pauses, timestamps advance by the wall-clock
// time between the last frame sent and the first frame of the new layer,
// and VP8 picture IDs and TL0PICIDX continue too. Before its first switch
// the offsets are zero, so a consumer of a single-layer producer sees the
// publisher's numbers (and answers NACKs from the producer's cache without
// translation). A munger is owned by its producer's writer (Producer.wmu).
type munger struct {
	layer   int8 // layer being forwarded; -1: none (not started or paused)
	started bool // something was forwarded
	cur     mapping
	prev    mapping // the mapping before the last switch (late NACKs)

	lastSeq uint16 // highest output sequence number
	lastTs  uint32 // output timestamp of the newest frame
	lastAt  int64  // unix nanos when lastTs was first sent
	lastPid uint16 // output picture ID of the newest frame
	lastTl0 uint8
	pidMask uint16 // 0x7f or 0x7fff once a picture ID was seen
}

// mapping is how one layer's numbers map to the output since a switch.
type mapping struct {
	layer    int8
	seqOff   uint16
	tsOff    uint32
	pidOff   uint16
	tl0Off   uint8
	firstIn  uint16 // the first input sequence number forwarded
	firstOut uint16 // its output sequence number
	valid    bool
}

func newMunger() munger { return munger{layer: -1} }

// seqHorizon is how far behind the newest packet a mapping's switch point
// is kept (see forward).
const seqHorizon = 1 << 14

// switchTo makes layer the forwarded one, starting with pkt (a keyframe
// start or, for codecs without keyframe detection, any packet). clock is
// the codec clock rate, now the time in unix nanos.
func (m *munger) switchTo(layer int8, pkt *rtp.Packet, fi *frameInfo, clock uint32, now int64) {
	next := mapping{layer: layer, firstIn: pkt.SequenceNumber, valid: true}
	if m.started {
		next.seqOff = m.lastSeq + 1 - pkt.SequenceNumber
		step := uint32(1)
		if d := now - m.lastAt; d > 0 {
			if s := uint32(uint64(d) * uint64(clock) / 1e9); s > 0 {
				step = s
			}
		}
		next.tsOff = m.lastTs + step - pkt.Timestamp
		if fi.vp8.pidOff != 0 && m.pidMask != 0 {
			next.pidOff = m.lastPid + 1 - fi.vp8.pid
		}
		if fi.vp8.tl0Off != 0 {
			next.tl0Off = m.lastTl0 + 1 - fi.vp8.tl0
		}
	}
	next.firstOut = pkt.SequenceNumber + next.seqOff
	m.prev, m.cur = m.cur, next
	m.layer = layer
}

// pause stops forwarding; the next switchTo continues the numbering.
func (m *munger) pause() { m.layer = -1 }

// forward maps pkt of the current layer to its output sequence number and
// timestamp; ok is false for packets older than the switch (they belong to
// the stream before it and cannot be placed).
func (m *munger) forward(pkt *rtp.Packet, fi *frameInfo, now int64) (seq uint16, ts uint32, ok bool) {
	c := &m.cur
	d := pkt.SequenceNumber - c.firstIn
	if int16(d) < 0 {
		return 0, 0, false
	}
	if d > seqHorizon {
		// Keep the switch point within half the sequence space of the
		// stream, or the comparison above would wrap after 32768
		// packets; packets older than seqHorizon never arrive.
		c.firstIn = pkt.SequenceNumber - seqHorizon
		c.firstOut = c.firstIn + c.seqOff
	}
	seq = pkt.SequenceNumber + c.seqOff
	ts = pkt.Timestamp + c.tsOff
	if !m.started || int16(seq-m.lastSeq) > 0 {
		m.lastSeq = seq
	}
	if !m.started || int32(ts-m.lastTs) > 0 {
		m.lastTs, m.lastAt = ts, now
	}
	if d := &fi.vp8; d.pidOff != 0 {
		mask := uint16(0x7fff)
		if d.pidLen == 1 {
			mask = 0x7f
		}
		pid := (d.pid + c.pidOff) & mask
		if !m.started || m.pidMask == 0 || int16((pid-m.lastPid)<<1) > 0 || mask != m.pidMask {
			m.lastPid = pid
		}
		m.pidMask = mask
	}
	if d := &fi.vp8; d.tl0Off != 0 {
		tl0 := d.tl0 + c.tl0Off
		if !m.started || int8(tl0-m.lastTl0) > 0 {
			m.lastTl0 = tl0
		}
	}
	m.started = true
	return seq, ts, true
}

// needsPatch reports whether the payload of a packet with fi must be
// rewritten for the current mapping.
func (c *mapping) needsPatch(fi *frameInfo) bool {
	return (fi.vp8.pidOff != 0 && c.pidOff != 0) || (fi.vp8.tl0Off != 0 && c.tl0Off != 0)
}

// patch copies payload into buf with the picture ID and TL0PICIDX of the
// mapping applied, and returns the copy (buf must be large enough).
func (c *mapping) patch(buf, payload []byte, fi *frameInfo) []byte {
	out := buf[:copy(buf, payload)]
	d := &fi.vp8
	if d.pidOff != 0 {
		if d.pidLen == 2 {
			pid := (d.pid + c.pidOff) & 0x7fff
			out[d.pidOff] = 0x80 | byte(pid>>8)
			out[d.pidOff+1] = byte(pid)
		} else {
			out[d.pidOff] = byte((d.pid + c.pidOff) & 0x7f)
		}
	}
	if d.tl0Off != 0 {
		out[d.tl0Off] = d.tl0 + c.tl0Off
	}
	return out
}

// lookup maps an output sequence number (a NACK) back to the mapping it
// was sent with and its input sequence number.
func (m *munger) lookup(out uint16) (*mapping, uint16, bool) {
	if c := &m.cur; c.valid && int16(out-c.firstOut) >= 0 {
		return c, out - c.seqOff, true
	}
	if c := &m.prev; c.valid && int16(out-c.firstOut) >= 0 {
		return c, out - c.seqOff, true
	}
	return nil, 0, false
}
