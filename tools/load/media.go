package load

import (
	"errors"
	"fmt"
	"time"

	"github.com/pion/rtp/codecs"

	"github.com/confab/confab/tools/clip"
)

// MTU is the largest RTP payload the publishers send (VP8 payload
// descriptor included), like a browser's.
const MTU = 1200

// Media is a clip cut into RTP payloads once, shared read-only by every
// publisher of a run: sending a packet then only means filling in a header.
type Media struct {
	video      []videoFrame
	audio      [][]byte
	frameTime  time.Duration // 1/FPS
	frameTicks uint32        // RTP timestamp increment per frame (90 kHz clock)
	bitrate    float64       // average video+audio bits per second of the clip
}

// videoFrame is one encoded frame as VP8 RTP payloads.
type videoFrame struct {
	payloads [][]byte
	keyframe bool
}

// AudioFrameTime is the duration of one Opus packet of the clip.
const AudioFrameTime = 20 * time.Millisecond

// audioTicks is the RTP timestamp increment of one Opus packet (48 kHz).
const audioTicks = 48000 * 20 / 1000

// NewMedia packetizes c: each video frame with a VP8 payloader (no picture
// id, so payloads can be shared) at MTU, and each Opus packet as one payload.
func NewMedia(c *clip.Clip) (*Media, error) {
	if c == nil || len(c.Video) == 0 || len(c.Audio) == 0 {
		return nil, errors.New("load: clip has no video or no audio")
	}
	if c.FPS <= 0 || c.FPS > 240 {
		return nil, fmt.Errorf("load: clip frame rate %v out of range", c.FPS)
	}
	if !c.Video[0].Keyframe {
		return nil, errors.New("load: clip does not start with a keyframe")
	}
	m := &Media{
		frameTime:  time.Duration(float64(time.Second) / c.FPS),
		frameTicks: uint32(90000/c.FPS + 0.5),
	}
	var payloader codecs.VP8Payloader
	var bytes int
	for i, f := range c.Video {
		p := payloader.Payload(MTU, f.Data)
		if len(p) == 0 {
			return nil, fmt.Errorf("load: clip video frame %d is empty", i)
		}
		m.video = append(m.video, videoFrame{payloads: p, keyframe: f.Keyframe})
		bytes += len(f.Data)
	}
	for i, a := range c.Audio {
		if len(a) == 0 {
			return nil, fmt.Errorf("load: clip audio packet %d is empty", i)
		}
		m.audio = append(m.audio, a)
	}
	seconds := float64(len(c.Video)) / c.FPS
	audioBytes := 0
	for _, a := range c.Audio {
		audioBytes += len(a)
	}
	audioSeconds := float64(len(c.Audio)) * AudioFrameTime.Seconds()
	m.bitrate = float64(bytes*8)/seconds + float64(audioBytes*8)/audioSeconds
	return m, nil
}

// LoadMedia reads the clip in dir (clip.Load) and packetizes it.
func LoadMedia(dir string) (*Media, error) {
	c, err := clip.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("load: clip %s: %w", dir, err)
	}
	return NewMedia(c)
}

// Bitrate returns the clip's average payload bit rate (video + audio).
func (m *Media) Bitrate() float64 { return m.bitrate }
