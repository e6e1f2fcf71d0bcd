package load

import (
	"encoding/binary"
	"errors"
	"io"
	"time"

	"github.com/pion/webrtc/v4"
)

// maxDelay bounds a plausible one-way delay; a larger difference means the
// send stamp belongs to an older packet with the same sequence number.
const maxDelay = 10 * time.Second

// rtpHeaderLen is the fixed RTP header length.
const rtpHeaderLen = 12

// trackReader is the receive side of one track of a subscriber PC. id,
// kind, publisher and times are set before its reader goroutine starts; the
// other fields are written only by that goroutine and read after it ended
// (Client.Close waits for it).
type trackReader struct {
	id        string // track id = producer id
	kind      webrtc.RTPCodecType
	publisher string     // stream id = the publisher's participant id
	times     *SendTimes // the publisher's send stamps; nil if not ours

	first     int64 // Clock.Now of the first packet (0: none)
	seq       seqTracker
	bytes     uint64 // RTP bytes (header included) of unique packets in the window
	delay     Histogram
	unmatched uint64 // packets in the window without a plausible send stamp
	readErr   error  // why reading stopped, unless the PC was closed
}

// readTrack reads tr until its peer connection closes. Per packet it takes
// one timestamp, one atomic load of the window phase and of the send stamp,
// and updates plain counters: no allocation, no lock, no logging.
func (c *Client) readTrack(t *trackReader, tr *webrtc.TrackRemote) {
	defer c.wg.Done()
	clock, win := c.env.Clock, c.env.Window
	buf := make([]byte, 1500)
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			if !errors.Is(err, io.EOF) && !c.leaving.Load() {
				t.readErr = err
			}
			return
		}
		now := clock.Now()
		c.received.Add(1)
		if t.first == 0 {
			t.first = now
			c.firstMedia.CompareAndSwap(0, now)
		}
		if n < rtpHeaderLen || !win.measuring() {
			continue
		}
		seq := binary.BigEndian.Uint16(buf[2:4])
		if !t.seq.add(seq) {
			continue
		}
		t.bytes += uint64(n)
		if t.times == nil {
			continue
		}
		if sent := t.times.Load(seq); sent > 0 && now >= sent && now-sent < int64(maxDelay) {
			t.delay.Add(time.Duration(now - sent))
		} else {
			t.unmatched++
		}
	}
}
