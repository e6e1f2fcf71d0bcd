package sfu

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Active speaker detection.
//
// Browsers put the level of every audio packet into the RFC 6464 header
// extension (ssrc-audio-level: 0 is the loudest, 127 silence, in -dBov),
// which the engine negotiates on publisher connections. The publisher's
// reader hands each level to the producer's levelMeter (a counter of loud
// packets, no lock); one engine goroutine (speakerMonitor) looks at every
// local audio producer's meter each speakingTick and sets its owner's
// Speaking state. Only the node the publisher is connected to computes it;
// other nodes learn it with the participant's state (the room sync).

const (
	// speakingTick is how often the meters are read.
	speakingTick = 100 * time.Millisecond
	// loudLevel: a packet at this level or louder (-dBov) counts as voice.
	loudLevel = 50
	// loudPackets: a tick with this many loud packets (of about 5 at 20 ms
	// per packet) is active.
	loudPackets = 2
	// speakingHold is how long a participant stays speaking after its last
	// active tick.
	speakingHold = 600 * time.Millisecond
)

// audioLevelID returns the negotiated id of the audio level extension on
// the publisher's receiver, 0 when none.
func audioLevelID(r *webrtc.RTPReceiver) uint8 {
	for _, e := range r.GetParameters().HeaderExtensions {
		if e.URI == sdp.AudioLevelURI {
			return uint8(e.ID)
		}
	}
	return 0
}

// levelMeter counts the loud packets of one audio producer.
type levelMeter struct {
	id   uint8 // header extension id; 0: none negotiated
	loud atomic.Uint32

	// Owned by the speakerMonitor goroutine.
	speaking   bool
	lastActive time.Time
}

func newLevelMeter(id uint8) *levelMeter { return &levelMeter{id: id} }

// observe counts h's level if loud. Called on the reader's goroutine for
// every packet; it does not allocate.
func (m *levelMeter) observe(h *rtp.Header) {
	if m.id == 0 || !h.Extension {
		return
	}
	b := h.GetExtension(m.id)
	if len(b) == 0 {
		return
	}
	if b[0]&0x7f <= loudLevel {
		m.loud.Add(1)
	}
}

// tick reads and resets the loud count and returns whether the producer
// is speaking now. Monitor goroutine only.
func (m *levelMeter) tick(now time.Time) bool {
	if m.loud.Swap(0) >= loudPackets {
		m.lastActive = now
		return true
	}
	return !m.lastActive.IsZero() && now.Sub(m.lastActive) < speakingHold
}

// speakerMonitor runs the speaking detection of an engine's local audio
// producers. Its goroutine is started by newSpeakerMonitor and stopped by
// close (Engine.Close).
type speakerMonitor struct {
	stop chan struct{}
	wg   sync.WaitGroup

	mu    sync.Mutex // guards prods
	prods map[*Producer]struct{}
}

func newSpeakerMonitor() *speakerMonitor {
	s := &speakerMonitor{stop: make(chan struct{}), prods: make(map[*Producer]struct{})}
	s.wg.Add(1)
	go s.run()
	return s
}

// add starts watching a local audio producer.
func (s *speakerMonitor) add(p *Producer) {
	s.mu.Lock()
	s.prods[p] = struct{}{}
	s.mu.Unlock()
}

// remove stops watching p; its owner stops speaking.
func (s *speakerMonitor) remove(p *Producer) {
	s.mu.Lock()
	_, ok := s.prods[p]
	delete(s.prods, p)
	s.mu.Unlock()
	if ok && p.owner != nil {
		p.owner.setSpeaking(false)
	}
}

func (s *speakerMonitor) run() {
	defer s.wg.Done()
	t := time.NewTicker(speakingTick)
	defer t.Stop()
	var prods []*Producer
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.mu.Lock()
			prods = prods[:0]
			for p := range s.prods {
				prods = append(prods, p)
			}
			s.mu.Unlock()
			for _, p := range prods {
				on := p.level.tick(now)
				if on != p.level.speaking && p.owner != nil {
					p.level.speaking = on
					p.owner.setSpeaking(on)
				}
			}
			clear(prods)
		}
	}
}

// close stops the goroutine and waits for it.
func (s *speakerMonitor) close() {
	close(s.stop)
	s.wg.Wait()
}
