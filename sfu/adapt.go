package sfu

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// The participant's side of layer allocation (allocate.go): the tiles it
// reports and the allocator run on its goroutine.

// SetVideoSettings records how this participant shows the remote video
// producer producerID (tile size and visibility); the layer it receives
// follows at once. Settings for a producer not (yet) consumed are kept
// for when it is. Errors: ErrInvalidArgument (empty id, negative size),
// ErrParticipantClosed.
func (p *Participant) SetVideoSettings(producerID string, s VideoSettings) error {
	if producerID == "" || s.Width < 0 || s.Height < 0 {
		return fmt.Errorf("sfu: video settings: %w", ErrInvalidArgument)
	}
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		return ErrParticipantClosed
	}
	if _, known := p.videoSettings[producerID]; !known && len(p.videoSettings) >= maxVideoSettings {
		for id := range p.videoSettings { // forget producers that are gone
			if p.consumers[id] == nil {
				delete(p.videoSettings, id)
			}
		}
		if len(p.videoSettings) >= maxVideoSettings {
			p.mu.Unlock()
			return fmt.Errorf("sfu: video settings: %w: more than %d producers", ErrInvalidArgument, maxVideoSettings)
		}
	}
	p.videoSettings[producerID] = s
	p.mu.Unlock()
	p.post(action{kind: actAllocate})
	return nil
}

// maxVideoSettings bounds the tiles a participant may report.
const maxVideoSettings = 1024

// videoConsumer is a consumer with the settings of its tile.
type videoConsumer struct {
	c *Consumer
	s VideoSettings
}

// reallocate runs the allocator over the participant's video consumers
// and applies its layers. Runs on the participant's goroutine.
func (p *Participant) reallocate() {
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		return
	}
	vcs := p.allocScratch[:0]
	audio := 0
	layered := len(p.videoSettings) > 0
	for id, c := range p.consumers {
		if c.producer.info.Kind != KindVideo {
			audio += c.producer.audioBudget()
			continue
		}
		s, ok := p.videoSettings[id]
		if !ok {
			s = VideoSettings{Visible: true}
		}
		vcs = append(vcs, videoConsumer{c: c, s: s})
		layered = layered || len(c.producer.layers) > 1
	}
	p.allocScratch = vcs
	p.mu.Unlock()
	if len(vcs) == 0 || !layered {
		// Single-layer producers shown in tiles never reported: the
		// lowest (only) layer, which every consumer starts with.
		clear(vcs)
		return
	}
	now := time.Now()
	tracks := make([]allocTrack, len(vcs))
	for i, vc := range vcs {
		tracks[i] = allocTrack{
			layers:  vc.c.producer.layerInfos(now.UnixNano()),
			visible: vc.s.Visible,
			width:   vc.s.Width,
			height:  vc.s.Height,
			current: int(vc.c.want.desired.Load()),
		}
	}
	est, capped := p.estimate()
	layers := p.alloc.decide(tracks, est, capped, audio, now)
	changed := false
	for i, vc := range vcs {
		target := liveTarget(tracks[i].layers, layers[i])
		if _, t := vc.c.Layer(); t != target || tracks[i].current != layers[i] {
			changed = true
		}
		vc.c.setLayer(target, layers[i])
	}
	if changed && p.log.Enabled(context.Background(), slog.LevelDebug) {
		attrs := []any{"estimate", est, "use", usage(tracks, layers) + audio, "layers", layers}
		if e := p.bwe.Load(); e != nil {
			attrs = append(attrs, "acked", e.AckedBitrate(), "bwe", e.State().String(), "capped", capped, "loss", e.Loss(), "overuse", e.Overuses())
		}
		p.log.Debug("layers allocated", attrs...)
	}
	clear(vcs)
}

// estimate returns the subscriber's send-side bandwidth estimate in bit/s,
// 0 when there is none (yet), and whether it is capped by what is sent
// (bweEstimator.Capped).
func (p *Participant) estimate() (int, bool) {
	if est := p.bwe.Load(); est != nil {
		return est.TargetBitrate(), est.Capped()
	}
	return 0, false
}

// layerInfos describes the producer's layers for the allocator: measured
// bitrate and size where known, nominal ones otherwise.
func (p *Producer) layerInfos(now int64) []layerInfo {
	out := make([]layerInfo, len(p.layers))
	for i, l := range p.layers {
		br, h := nominal(i, len(p.layers))
		li := layerInfo{bitrate: br, height: h, width: h * 16 / 9, live: l.live(now)}
		if r := int(l.bitrate.Load()); li.live && r > 0 {
			li.bitrate = r
		}
		if w, h := int(l.width.Load()), int(l.height.Load()); w > 0 && h > 0 {
			li.width, li.height = w, h
		}
		out[i] = li
	}
	return out
}

// audioBudget is the bandwidth an audio producer's consumer is assumed to
// take: its measured rate, at least audioBitrate (RED about doubles Opus).
func (p *Producer) audioBudget() int {
	if len(p.layers) == 0 {
		return audioBitrate
	}
	return max(audioBitrate, int(p.layers[0].bitrate.Load()))
}
