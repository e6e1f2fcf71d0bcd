package sfu

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// recorded returns the events and the goroutines that delivered them.
func (r *recorder) recorded() ([]Event, []origin) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...), append([]origin(nil), r.origins...)
}

// checkOwnGoroutine fails unless every event of c except EventClosed was
// delivered by one goroutine, c's own (Participant.run), and never by a
// publisher's track reader.
func checkOwnGoroutine(t *testing.T, c *client) {
	t.Helper()
	evs, origins := c.rec.recorded()
	id := ""
	for i, ev := range evs {
		if ev.Type == EventClosed {
			continue
		}
		o := origins[i]
		if !o.inLoop || o.onPub {
			t.Errorf("%s: %s delivered outside the participant's goroutine (%+v)", c.p.Info().Name, ev.Type, o)
		}
		if id == "" {
			id = o.id
		} else if o.id != id {
			t.Errorf("%s: %s delivered by goroutine %s, earlier events by %s", c.p.Info().Name, ev.Type, o.id, id)
		}
	}
}

// settle waits until c answered at least answers subscriber offers and has
// no offer outstanding, pending or scheduled.
func settle(ctx context.Context, t *testing.T, c *client, answers int64) {
	t.Helper()
	waitUntil(ctx, t, c.p.Info().Name+" settled", func() bool {
		if c.answered.Load() < answers || c.p.barrier() {
			return false
		}
		c.p.mu.Lock()
		defer c.p.mu.Unlock()
		return c.p.subState == subIdle && !c.p.subPending
	})
}

// offerCount returns how many subscriber offers c received.
func offerCount(c *client) int { return c.rec.count(isType(EventSubscriberOffer)) }

// TestEventOrderUnderChurn: under concurrent churn (remote publishers whose
// producers come and go from several goroutines at once, local
// participants joining and leaving) a subscriber sees, per other
// participant, a valid sequence: joined, then producers added and removed
// (each added before removed), then left once it has none, and so on.
func TestEventOrderUnderChurn(t *testing.T) {
	tests := []struct {
		name    string
		remotes int // remote participants
		slots   int // goroutines per remote participant, each adding and closing producers
		rounds  int // producers per slot, one after the other
		locals  int // goroutines joining and leaving as local participants, rounds times
	}{
		{"remote publishers", 4, 3, 6, 0},
		{"local joins and leaves", 0, 0, 6, 4},
		{"both", 3, 2, 5, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			e := newTestEngine(t, func(c *Config) { c.MaxParticipantsPerRoom = 100 })
			sub := joinClient(t, e, "r", "sub")
			room := sub.p.Room()
			var wg sync.WaitGroup
			for i := range tt.remotes {
				for j := range tt.slots {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for k := range tt.rounds {
							info := remoteInfo(fmt.Sprintf("rp-%d-%d-%d", i, j, k), fmt.Sprintf("remote-%d", i))
							prod, err := room.AddProducer(info, nil)
							if err != nil {
								t.Errorf("AddProducer: %v", err)
								return
							}
							prod.Close()
						}
					}()
				}
			}
			for i := range tt.locals {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for k := range tt.rounds {
						p, err := e.Join("r", JoinParams{Name: fmt.Sprintf("local-%d-%d", i, k), Events: newRecorder()})
						if err != nil {
							t.Errorf("Join: %v", err)
							return
						}
						p.Close()
					}
				}()
			}
			wg.Wait()

			adds := tt.remotes * tt.slots * tt.rounds
			joins := tt.locals * tt.rounds
			waitUntil(ctx, t, "every change delivered", func() bool {
				sub.p.barrier()
				return sub.rec.count(isType(EventProducerAdded)) == adds &&
					sub.rec.count(isType(EventProducerRemoved)) == adds &&
					sub.rec.count(isType(EventParticipantLeft)) == sub.rec.count(isType(EventParticipantJoined)) &&
					sub.rec.count(func(ev Event) bool {
						return ev.Type == EventParticipantLeft && !ev.Participant.Remote
					}) == joins
			})

			type state struct {
				present bool
				prods   map[string]bool
			}
			states := map[string]*state{}
			get := func(id string) *state {
				if states[id] == nil {
					states[id] = &state{prods: map[string]bool{}}
				}
				return states[id]
			}
			for i, ev := range sub.rec.snapshot() {
				switch ev.Type {
				case EventParticipantJoined:
					s := get(ev.Participant.ID)
					if s.present {
						t.Fatalf("event %d: %s joined twice", i, ev.Participant.ID)
					}
					s.present = true
				case EventParticipantLeft:
					s := get(ev.Participant.ID)
					if !s.present || len(s.prods) > 0 {
						t.Fatalf("event %d: %s left while present=%v with producers %v", i, ev.Participant.ID, s.present, s.prods)
					}
					s.present = false
				case EventProducerAdded:
					s := get(ev.Producer.ParticipantID)
					if !s.present || s.prods[ev.Producer.ID] {
						t.Fatalf("event %d: producer %s added while its participant present=%v (or twice)", i, ev.Producer.ID, s.present)
					}
					s.prods[ev.Producer.ID] = true
				case EventProducerRemoved:
					s := get(ev.Producer.ParticipantID)
					if !s.present || !s.prods[ev.Producer.ID] {
						t.Fatalf("event %d: producer %s removed before added or after its participant left", i, ev.Producer.ID)
					}
					delete(s.prods, ev.Producer.ID)
				}
			}
			for id, s := range states {
				if s.present {
					t.Errorf("%s never left", id)
				}
			}
			if len(room.Participants()) != 1 {
				t.Errorf("room participants = %+v, want only sub", room.Participants())
			}
			checkOwnGoroutine(t, sub)
		})
	}
}

// TestPublishOffersOffPublisherGoroutine: a new producer (remote through
// AddProducer, or local through Publish) reaches N subscribers without its
// goroutine making their offers: AddProducer returns before any subscriber
// offer, every offer and event is delivered on the subscriber's own
// goroutine, and the burst costs each subscriber exactly one offer.
func TestPublishOffersOffPublisherGoroutine(t *testing.T) {
	tests := []struct {
		name   string
		subs   int
		remote bool
	}{
		{"remote producer, 1 subscriber", 1, true},
		{"remote producer, 4 subscribers", 4, true},
		{"local publisher, 3 subscribers", 3, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			e := newTestEngine(t, nil)
			var subs []*client
			for i := range tt.subs {
				subs = append(subs, joinClient(t, e, "r", fmt.Sprintf("sub-%d", i)))
			}
			room := subs[0].p.Room()
			var prod ProducerInfo
			if tt.remote {
				self := callerOrigin()
				p, err := room.AddProducer(remoteInfo("rp", "remote-alice"), nil)
				if err != nil {
					t.Fatalf("AddProducer: %v", err)
				}
				for _, s := range subs {
					_, origins := s.rec.recorded()
					for _, o := range origins {
						if o.id == self.id {
							t.Errorf("%s: event delivered synchronously by AddProducer's caller", s.p.Info().Name)
						}
					}
				}
				prod = p.Info()
				for _, s := range subs {
					waitFeedMedia(ctx, t, s, p)
				}
			} else {
				pub := joinClient(t, e, "r", "alice")
				pub.publishVP8(ctx)
				prod = waitProducers(ctx, t, room, 1)[0]
				for _, s := range subs {
					waitMedia(ctx, t, s, prod)
				}
				if n := offerCount(pub); n != 0 {
					t.Errorf("publisher got %d subscriber offers, want 0", n)
				}
			}
			for _, s := range subs {
				settle(ctx, t, s, 1)
				if n := offerCount(s); n != 1 {
					t.Errorf("%s: %d subscriber offers for one producer, want 1", s.p.Info().Name, n)
				}
				if !strings.Contains(lastOffer(s.rec), prod.ID) {
					t.Errorf("%s: the offer does not carry producer %s", s.p.Info().Name, prod.ID)
				}
				checkOwnGoroutine(t, s)
			}
		})
	}
}

// TestNegotiationDebounce: K producers added at once (well within the
// debounce delay) cost every subscriber one offer carrying all K, not K
// offers; closing them all at once costs one more.
func TestNegotiationDebounce(t *testing.T) {
	tests := []struct {
		name string
		subs int
		k    int
	}{
		{"one producer", 2, 1},
		{"five producers", 2, 5},
		{"twenty producers", 1, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			e := newTestEngine(t, nil)
			var subs []*client
			for i := range tt.subs {
				subs = append(subs, joinClient(t, e, "r", fmt.Sprintf("sub-%d", i)))
			}
			room := subs[0].p.Room()
			var prods []*Producer
			for i := range tt.k {
				p, err := room.AddProducer(remoteInfo(fmt.Sprintf("rp-%d", i), "remote-alice"), nil)
				if err != nil {
					t.Fatalf("AddProducer: %v", err)
				}
				prods = append(prods, p)
			}
			for _, s := range subs {
				settle(ctx, t, s, 1)
				if n := offerCount(s); n != 1 {
					t.Errorf("%s: %d offers after adding %d producers, want 1", s.p.Info().Name, n, tt.k)
				}
				last := lastOffer(s.rec)
				for _, p := range prods {
					if !strings.Contains(last, p.Info().ID) {
						t.Errorf("%s: the offer misses producer %s", s.p.Info().Name, p.Info().ID)
					}
				}
			}

			for _, p := range prods {
				p.Close()
			}
			for _, s := range subs {
				settle(ctx, t, s, 2)
				if n := offerCount(s); n != 2 {
					t.Errorf("%s: %d offers after closing the producers, want 2", s.p.Info().Name, n)
				}
				s.p.mu.Lock()
				nc := len(s.p.consumers)
				s.p.mu.Unlock()
				if nc != 0 {
					t.Errorf("%s: %d consumers left", s.p.Info().Name, nc)
				}
				checkOwnGoroutine(t, s)
			}
		})
	}
}

// TestCloseRoomMakesNoOffers: closing a room of N publishing participants
// (Engine.Close) makes no subscriber offer at all: every participant gets
// exactly one more event, EventClosed (O(N) events, no O(N^2) offers).
func TestCloseRoomMakesNoOffers(t *testing.T) {
	tests := []struct {
		name string
		n    int
	}{
		{"two participants", 2},
		{"four participants", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			e := newTestEngine(t, nil)
			var cs []*client
			for i := range tt.n {
				cs = append(cs, joinClient(t, e, "r", fmt.Sprintf("p-%d", i)))
			}
			for _, c := range cs {
				c.publishVP8(ctx)
			}
			prods := waitProducers(ctx, t, cs[0].p.Room(), tt.n)
			before := make([]int, len(cs))
			for i, c := range cs {
				for _, prod := range prods {
					if prod.ParticipantID != c.p.ID() {
						waitMedia(ctx, t, c, prod)
					}
				}
				settle(ctx, t, c, 1)
				before[i] = len(c.rec.snapshot())
			}

			if err := e.Close(); err != nil {
				t.Fatalf("Engine.Close: %v", err)
			}
			for i, c := range cs {
				evs := c.rec.snapshot()[before[i]:]
				if len(evs) != 1 || evs[0].Type != EventClosed {
					types := make([]EventType, len(evs))
					for j, ev := range evs {
						types[j] = ev.Type
					}
					t.Errorf("%s: events after close = %v, want [%s]", c.p.Info().Name, types, EventClosed)
				}
				checkOwnGoroutine(t, c)
			}
			for _, c := range cs {
				c.close()
			}
			goleak.VerifyNone(t)
		})
	}
}

// TestQueueOverflowClosesParticipant: a participant whose EventHandler is
// stuck never blocks the room: AddProducer keeps returning, and once the
// participant's queue overflows it is closed with ErrQueueOverflow.
func TestQueueOverflowClosesParticipant(t *testing.T) {
	ctx := testContext(t)
	e := newTestEngine(t, nil)
	block := make(chan struct{})
	blocked := make(chan struct{}, 1)
	closed := make(chan Event, 1)
	p, err := e.Join("r", JoinParams{Name: "slow", Events: EventHandlerFunc(func(ev Event) {
		if ev.Type == EventClosed {
			closed <- ev
			return
		}
		select {
		case blocked <- struct{}{}:
		default:
		}
		<-block
	})})
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	room := p.Room()
	audio := func(i int) ProducerInfo {
		info := remoteInfo(fmt.Sprintf("rp-%d", i), "remote-alice")
		info.Kind, info.Codec = KindAudio, Codec{MimeType: "audio/opus", ClockRate: 48000, Channels: 2}
		return info
	}
	// The first producer's events block the participant's goroutine; then
	// maxActions more fill its queue and one overflows it.
	if _, err := room.AddProducer(audio(0), nil); err != nil {
		t.Fatalf("AddProducer: %v", err)
	}
	select {
	case <-blocked:
	case <-ctx.Done():
		t.Fatal("the handler was not called")
	}
	for i := 1; i <= maxActions+1; i++ {
		if _, err := room.AddProducer(audio(i), nil); err != nil {
			t.Fatalf("AddProducer %d: %v", i, err)
		}
	}
	close(block)
	select {
	case <-p.Done():
	case <-ctx.Done():
		t.Fatal("participant not closed after its queue overflowed")
	}
	select {
	case ev := <-closed:
		if !errors.Is(ev.Err, ErrQueueOverflow) {
			t.Errorf("EventClosed.Err = %v, want ErrQueueOverflow", ev.Err)
		}
	case <-ctx.Done():
		t.Fatal("no EventClosed")
	}
	if e.Room("r") != nil {
		t.Error("room still open after its only participant was closed")
	}
}
