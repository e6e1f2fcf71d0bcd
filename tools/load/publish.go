package load

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// maxLag is how far the pacer may fall behind its schedule (an overloaded
// box) before it skips ahead instead of bursting to catch up.
const maxLag = 500 * time.Millisecond

// publisher is a Client's publisher peer connection with its two tracks.
type publisher struct {
	pc         *webrtc.PeerConnection
	video      *webrtc.TrackLocalStaticRTP
	audio      *webrtc.TrackLocalStaticRTP
	videoTimes *SendTimes
	audioTimes *SendTimes
	stop       context.CancelFunc // stops the pacer

	keyframe chan struct{} // a PLI/FIR arrived: restart at the clip's first keyframe
}

func (p *publisher) close() error {
	p.stop()
	if err := p.pc.Close(); err != nil {
		return fmt.Errorf("load: close publisher pc: %w", err)
	}
	return nil
}

// Publish offers a publisher peer connection with one VP8 and one Opus track
// ("publish"), applies the server's answer and starts sending m, looping,
// paced at the clip's frame rate (video) and every 20 ms (audio), until
// Close. Send stamps of every packet go to the Env's Registry under the
// client's participant id. A PLI or FIR from the server makes the next frame
// the clip's first keyframe, as a browser would send a fresh keyframe.
func (c *Client) Publish(ctx context.Context, m *Media) error {
	c.mu.Lock()
	if c.closed || c.pub != nil {
		c.mu.Unlock()
		return fmt.Errorf("load: publish %s: client closed or already publishing", c.id)
	}
	c.mu.Unlock()

	p := &publisher{
		videoTimes: &SendTimes{},
		audioTimes: &SendTimes{},
		keyframe:   make(chan struct{}, 1),
	}
	var err error
	if p.video, err = webrtc.NewTrackLocalStaticRTP(vp8Capability(nil), "video", c.id); err != nil {
		return fmt.Errorf("load: publish %s: video track: %w", c.id, err)
	}
	if p.audio, err = webrtc.NewTrackLocalStaticRTP(opusCapability(nil), "audio", c.id); err != nil {
		return fmt.Errorf("load: publish %s: audio track: %w", c.id, err)
	}
	if p.pc, err = c.env.pubAPI.NewPeerConnection(webrtc.Configuration{}); err != nil {
		return fmt.Errorf("load: publish %s: peer connection: %w", c.id, err)
	}
	pctx, stop := context.WithCancel(c.ctx)
	p.stop = stop
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errors.Join(fmt.Errorf("load: publish %s: client closed", c.id), p.close())
	}
	c.pub = p // Close closes it from now on
	c.mu.Unlock()

	videoSender, err := p.pc.AddTrack(p.video)
	if err != nil {
		return fmt.Errorf("load: publish %s: add video: %w", c.id, err)
	}
	audioSender, err := p.pc.AddTrack(p.audio)
	if err != nil {
		return fmt.Errorf("load: publish %s: add audio: %w", c.id, err)
	}
	offer, err := p.pc.CreateOffer(nil)
	if err != nil {
		return fmt.Errorf("load: publish %s: create offer: %w", c.id, err)
	}
	sdp, err := c.describe(p.pc, offer)
	if err != nil {
		return fmt.Errorf("load: publish %s: offer: %w", c.id, err)
	}
	c.env.Registry.Register(c.id, p.videoTimes, p.audioTimes)
	c.publishAt.Store(c.env.Clock.Now())
	if err := c.ws.send(ctx, message{Type: msgPublish, SDP: &wireSDP{Type: "offer", SDP: sdp}}); err != nil {
		return err
	}

	t := time.NewTimer(NegotiationTimeout)
	defer t.Stop()
	var answer wireSDP
	select {
	case answer = <-c.answerc:
	case m := <-c.errorc:
		return fmt.Errorf("load: publish %s: server error %s: %s", c.id, m.Code, m.Message)
	case <-c.readerDone:
		return fmt.Errorf("load: publish %s: signaling connection closed", c.id)
	case <-ctx.Done():
		return fmt.Errorf("load: publish %s: %w", c.id, ctx.Err())
	case <-t.C:
		return fmt.Errorf("load: publish %s: no publish-answer within %v", c.id, NegotiationTimeout)
	}
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer.SDP}); err != nil {
		return fmt.Errorf("load: publish %s: apply answer: %w", c.id, err)
	}

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return fmt.Errorf("load: publish %s: client closed", c.id)
	}
	c.wg.Add(3)
	c.mu.Unlock()
	go c.readRTCP(videoSender, p.keyframe)
	go c.readRTCP(audioSender, nil)
	go c.pace(pctx, m, p)
	return nil
}

// readRTCP drains a sender's RTCP (this is what runs the interceptors: NACK
// responses, reports) and signals keyframe requests on kf (if not nil).
func (c *Client) readRTCP(s *webrtc.RTPSender, kf chan<- struct{}) {
	defer c.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, _, err := s.Read(buf)
		if err != nil {
			return // the PC was closed
		}
		if kf != nil && wantsKeyframe(buf[:n]) {
			select {
			case kf <- struct{}{}:
			default:
			}
		}
	}
}

// wantsKeyframe reports whether a compound RTCP packet holds a PLI or FIR
// (payload-specific feedback, PT 206, FMT 1 or 4).
func wantsKeyframe(b []byte) bool {
	for len(b) >= 4 {
		fmtField, pt := b[0]&0x1f, b[1]
		if pt == 206 && (fmtField == 1 || fmtField == 4) {
			return true
		}
		size := (int(b[2])<<8 | int(b[3]) + 1) * 4
		if size > len(b) {
			return false
		}
		b = b[size:]
	}
	return false
}

// pace sends m on p's tracks until ctx ends: each video frame as a burst of
// its RTP packets at the frame's scheduled time, one Opus packet every
// 20 ms. Schedules are absolute (no drift); a pacer more than maxLag late
// skips ahead. No allocation per packet.
func (c *Client) pace(ctx context.Context, m *Media, p *publisher) {
	defer c.wg.Done()
	clock := c.env.Clock
	video := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96,
		SSRC: rand.Uint32(), SequenceNumber: uint16(rand.Uint32()), Timestamp: rand.Uint32()}}
	audio := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111,
		SSRC: rand.Uint32(), SequenceNumber: uint16(rand.Uint32()), Timestamp: rand.Uint32()}}
	start := time.Now()
	var nextVideo, nextAudio time.Duration // offsets from start
	frame, packet := 0, 0
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		now := time.Since(start)
		if now-nextVideo > maxLag {
			nextVideo = now
		}
		for nextVideo <= now {
			select {
			case <-p.keyframe:
				frame = 0
			default:
			}
			f := &m.video[frame]
			for i, payload := range f.payloads {
				video.SequenceNumber++
				video.Marker = i == len(f.payloads)-1
				video.Payload = payload
				p.videoTimes.Store(video.SequenceNumber, clock.Now())
				_ = p.video.WriteRTP(&video) // fails only while (un)binding; RTP tolerates it
			}
			video.Timestamp += m.frameTicks
			frame = (frame + 1) % len(m.video)
			nextVideo += m.frameTime
		}
		if now-nextAudio > maxLag {
			nextAudio = now
		}
		for nextAudio <= now {
			audio.SequenceNumber++
			audio.Payload = m.audio[packet]
			p.audioTimes.Store(audio.SequenceNumber, clock.Now())
			_ = p.audio.WriteRTP(&audio)
			audio.Timestamp += audioTicks
			packet = (packet + 1) % len(m.audio)
			nextAudio += AudioFrameTime
		}
		timer.Reset(min(nextVideo, nextAudio) - time.Since(start))
	}
}
