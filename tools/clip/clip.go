// Package clip generates and reads the encoded test clip of the load
// generator: VP8 video in an IVF file and Opus audio in an Ogg file, both held
// in memory once loaded so that many simulated publishers can send them
// without touching the disk or an encoder.
package clip

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
)

// File names inside a clip directory.
const (
	// VideoFile is the name of the VP8 IVF file in a clip directory.
	VideoFile = "video.ivf"
	// AudioFile is the name of the Opus Ogg file in a clip directory.
	AudioFile = "audio.ogg"
)

// opusPacketSamples is the length of one 20 ms Opus packet in 48 kHz samples,
// the unit of Ogg granule positions for Opus.
const opusPacketSamples = 960

// Clip is an encoded test clip held in memory: VP8 frames from an IVF file and
// Opus packets from an Ogg file.
type Clip struct {
	Video         []Frame  // VP8 frames in order; Video[0] is a keyframe
	FPS           float64  // frames per second of Video (from the IVF header timebase)
	Width, Height int      // picture size of Video in pixels
	Audio         [][]byte // Opus packets, 20 ms each
}

// Frame is one encoded video frame.
type Frame struct {
	Data     []byte // the VP8 frame as the encoder wrote it (RTP payload before packetization)
	Keyframe bool   // true for a VP8 key frame (decodable on its own)
}

// Load reads dir/video.ivf and dir/audio.ogg.
func Load(dir string) (*Clip, error) {
	c := &Clip{}
	if err := c.loadVideo(filepath.Join(dir, VideoFile)); err != nil {
		return nil, fmt.Errorf("clip: load %s: %w", dir, err)
	}
	audio, err := loadAudio(filepath.Join(dir, AudioFile))
	if err != nil {
		return nil, fmt.Errorf("clip: load %s: %w", dir, err)
	}
	c.Audio = audio
	return c, nil
}

// loadVideo fills Video, FPS, Width and Height from the IVF file at path.
func (c *Clip) loadVideo(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("video: %w", err)
	}
	r, hdr, err := ivfreader.NewWith(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("video %s: ivf header: %w", path, err)
	}
	if hdr.FourCC != "VP80" {
		return fmt.Errorf("video %s: codec %q, want VP80", path, hdr.FourCC)
	}
	if hdr.TimebaseDenominator == 0 || hdr.TimebaseNumerator == 0 {
		return fmt.Errorf("video %s: invalid timebase %d/%d", path, hdr.TimebaseNumerator, hdr.TimebaseDenominator)
	}
	var first, last uint64
	for {
		data, fh, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("video %s: frame %d: %w", path, len(c.Video), err)
		}
		if len(data) < 3 {
			return fmt.Errorf("video %s: frame %d: %d bytes is too short for VP8", path, len(c.Video), len(data))
		}
		// ivfreader scales the frame's pts by den/num; undo that.
		pts := fh.Timestamp * uint64(hdr.TimebaseNumerator) / uint64(hdr.TimebaseDenominator)
		if len(c.Video) == 0 {
			first = pts
		}
		last = pts
		c.Video = append(c.Video, Frame{Data: data, Keyframe: isVP8Keyframe(data)})
	}
	if len(c.Video) == 0 {
		return fmt.Errorf("video %s: no frames", path)
	}
	if !c.Video[0].Keyframe {
		return fmt.Errorf("video %s: first frame is not a keyframe", path)
	}
	c.Width, c.Height = int(hdr.Width), int(hdr.Height)
	// The timebase is num/den seconds per timestamp unit. vpxenc stamps frame
	// i with i in a 1/fps timebase; the average over all frames also covers
	// writers with a finer timebase (ffmpeg uses 1/1000).
	tick := float64(hdr.TimebaseNumerator) / float64(hdr.TimebaseDenominator)
	c.FPS = 1 / tick
	if n := len(c.Video); n > 1 && last > first {
		c.FPS = float64(n-1) / (float64(last-first) * tick)
	}
	return nil
}

// isVP8Keyframe reports whether a VP8 frame is a key frame: bit 0 of the frame
// tag is 0 and the key frame start code 9d 01 2a follows the 3-byte tag
// (RFC 6386 section 9.1).
func isVP8Keyframe(data []byte) bool {
	return data[0]&1 == 0 && len(data) >= 6 && data[3] == 0x9d && data[4] == 0x01 && data[5] == 0x2a
}

// loadAudio returns the Opus packets of the Ogg file at path. Each Ogg page
// must carry exactly one 20 ms packet (Generate runs opusenc with
// --max-delay 20); the granule positions are checked for that.
func loadAudio(path string) ([][]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audio: %w", err)
	}
	r, hdr, err := oggreader.NewWith(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("audio %s: opus header: %w", path, err)
	}
	if hdr.Channels == 0 || hdr.Channels > 2 {
		return nil, fmt.Errorf("audio %s: %d channels, want 1 or 2", path, hdr.Channels)
	}
	var (
		packets [][]byte
		prev    uint64 // granule position of the previous audio page
		short   bool   // a page shorter than 20 ms was seen: it must be the last
	)
	for {
		payload, ph, err := r.ParseNextPage()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("audio %s: page %d: %w", path, len(packets), err)
		}
		// The comment header (OpusTags, possibly spread over several pages)
		// has granule position 0; every audio page has a larger one.
		if t, ok := ph.HeaderType(payload); (ok && t == oggreader.HeaderOpusTags) || ph.GranulePosition == 0 {
			continue
		}
		if len(payload) == 0 {
			return nil, fmt.Errorf("audio %s: packet %d is empty", path, len(packets))
		}
		if short {
			return nil, fmt.Errorf("audio %s: packet %d follows a page shorter than 20 ms", path, len(packets))
		}
		if d := opusDuration(payload); d != opusPacketSamples {
			return nil, fmt.Errorf("audio %s: packet %d lasts %d samples, want %d (20 ms)", path, len(packets), d, opusPacketSamples)
		}
		// The last page may end early (end trimming); every other page
		// advances by one packet, which rules out several packets per page.
		switch delta := ph.GranulePosition - prev; {
		case ph.GranulePosition < prev || delta > opusPacketSamples:
			return nil, fmt.Errorf("audio %s: page of packet %d spans %d samples, want one 20 ms packet per page", path, len(packets), int64(delta))
		case delta < opusPacketSamples:
			short = true
		}
		prev = ph.GranulePosition
		packets = append(packets, payload)
	}
	if len(packets) == 0 {
		return nil, fmt.Errorf("audio %s: no packets", path)
	}
	return packets, nil
}

// opusDuration returns the duration in 48 kHz samples of an Opus packet from
// its TOC byte (RFC 6716 section 3.1), or 0 when the packet is malformed.
func opusDuration(p []byte) int {
	toc := p[0]
	config := int(toc >> 3)
	var frame int // samples per frame
	switch {
	case config < 12: // SILK: 10, 20, 40, 60 ms
		frame = []int{480, 960, 1920, 2880}[config&3]
	case config < 16: // hybrid: 10, 20 ms
		frame = []int{480, 960}[config&1]
	default: // CELT: 2.5, 5, 10, 20 ms
		frame = []int{120, 240, 480, 960}[config&3]
	}
	switch toc & 3 {
	case 0:
		return frame
	case 1, 2:
		return 2 * frame
	default:
		if len(p) < 2 {
			return 0
		}
		return int(p[1]&0x3f) * frame
	}
}
