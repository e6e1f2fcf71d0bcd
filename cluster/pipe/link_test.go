package pipe

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/confab/confab/sfu"
)

// ptBlackHole returns a server that accepts control requests and never
// answers (until the client gives up or the test ends).
func ptBlackHole(t *testing.T) *httptest.Server {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() {
		close(release)
		srv.Close()
	})
	return srv
}

func TestLinkPeerNeverAnswers(t *testing.T) {
	ptLeakCheck(t)
	ctx := ptContext(t)
	c := newPTCluster(t, func(cfg *PipesConfig) { cfg.RequestTimeout = 300 * time.Millisecond }, "b")
	b := c.node("b")
	c.setURL("dead", ptBlackHole(t).URL)
	ptJoin(t, b, "room", "bob")

	info := sfu.ProducerInfo{ID: "p1", Kind: sfu.KindVideo, ParticipantID: "x", ParticipantName: "X", Origin: "dead"}
	err := b.pipes.PipeIn(ctx, "room", info)
	if !errors.Is(err, ErrLinkFailed) {
		t.Fatalf("PipeIn error = %v, want ErrLinkFailed", err)
	}
	if ctx.Err() != nil {
		t.Fatal("PipeIn returned only when the test context ended")
	}
	ptWait(ctx, t, "link failure reported", func() bool { return slices.Equal(b.failures(), []string{"dead"}) })
	if st := b.pipes.Status(); len(st) != 0 {
		t.Errorf("Status = %+v, want no links", st)
	}
	if got := b.pipes.Piped("room"); len(got) != 0 {
		t.Errorf("Piped = %+v, want none", got)
	}
}

func TestLinkPipeInContextEnds(t *testing.T) {
	ptLeakCheck(t)
	c := newPTCluster(t, func(cfg *PipesConfig) { cfg.RequestTimeout = time.Minute }, "b")
	b := c.node("b")
	c.setURL("dead", ptBlackHole(t).URL)
	ptJoin(t, b, "room", "bob")

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	info := sfu.ProducerInfo{ID: "p1", Kind: sfu.KindAudio, ParticipantID: "x", Origin: "dead"}
	if err := b.pipes.PipeIn(ctx, "room", info); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("PipeIn error = %v, want context.DeadlineExceeded", err)
	}
	if got := b.pipes.Piped("room"); len(got) != 0 {
		t.Errorf("Piped after abandoned PipeIn = %+v, want none", got)
	}
	// The negotiation is still blocked on the peer: Close must abort it
	// (the leak check verifies nothing is left behind).
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := b.pipes.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	select {
	case <-done:
	case <-time.After(ptTimeout):
		t.Fatal("Close blocked on a peer that never answers")
	}
	if err := b.pipes.PipeIn(context.Background(), "room", info); !errors.Is(err, ErrPipesClosed) {
		t.Errorf("PipeIn after Close = %v, want ErrPipesClosed", err)
	}
	if f := b.failures(); len(f) != 0 {
		t.Errorf("OnLinkFailed calls = %v, want none (closing is not a failure)", f)
	}
}

func TestLinkControlFailureClosesLink(t *testing.T) {
	ptLeakCheck(t)
	ctx := ptContext(t)
	c := newPTCluster(t, func(cfg *PipesConfig) { cfg.RequestTimeout = 5 * time.Second }, "a", "b")
	a, b := c.node("a"), c.node("b")
	_, prod1 := ptPublish(ctx, t, a, "room", "alice")
	_, prod2 := ptPublish(ctx, t, a, "room", "dave")
	sub := ptJoin(t, b, "room", "bob")
	if err := b.pipes.PipeIn(ctx, "room", prod1); err != nil {
		t.Fatalf("PipeIn: %v", err)
	}
	ptWaitMedia(ctx, t, sub, prod1)

	// a's control channel becomes unreachable: the next negotiation fails,
	// which fails the whole link.
	c.setURL("a", "http://127.0.0.1:1")
	if err := b.pipes.PipeIn(ctx, "room", prod2); !errors.Is(err, ErrLinkFailed) {
		t.Fatalf("PipeIn error = %v, want ErrLinkFailed", err)
	}
	ptWait(ctx, t, "piped producer removed on b", func() bool {
		return sub.ev.has(sfu.EventProducerRemoved, prod1.ID) != nil && !ptHasProducer(b, "room", prod1.ID)
	})
	ptWait(ctx, t, "link failure reported", func() bool { return slices.Equal(b.failures(), []string{"a"}) })
	if ls := ptLink(b, "a", DirectionIn); ls != nil {
		t.Errorf("link still listed: %+v", ls)
	}
}

func TestLinkDropNodeAndNewLink(t *testing.T) {
	ptLeakCheck(t)
	ctx := ptContext(t)
	c := newPTCluster(t, nil, "a", "b")
	a, b := c.node("a"), c.node("b")
	_, prod := ptPublish(ctx, t, a, "room", "alice")
	sub := ptJoin(t, b, "room", "bob")
	if err := b.pipes.PipeIn(ctx, "room", prod); err != nil {
		t.Fatalf("PipeIn: %v", err)
	}
	first := ptWaitMedia(ctx, t, sub, prod)
	oldID := ptLink(b, "a", DirectionIn).LinkID

	b.pipes.DropNode("a")
	ptWait(ctx, t, "producer-removed on b", func() bool {
		return sub.ev.has(sfu.EventProducerRemoved, prod.ID) != nil
	})
	if st := b.pipes.Status(); len(st) != 0 {
		t.Errorf("b Status after DropNode = %+v, want no links", st)
	}
	if f := b.failures(); len(f) != 0 {
		t.Errorf("OnLinkFailed calls = %v, want none", f)
	}

	// a still has its side of the old link (it was not told). Piping again
	// creates a new link; a replaces its stale side.
	if err := b.pipes.PipeIn(ctx, "room", prod); err != nil {
		t.Fatalf("PipeIn after DropNode: %v", err)
	}
	ptWait(ctx, t, "media over the new link", func() bool {
		rt := sub.track(prod.ID)
		return rt != nil && rt != first && rt.packets.Load() >= 5
	})
	newID := ptLink(b, "a", DirectionIn).LinkID
	if newID == oldID {
		t.Fatalf("link id reused after DropNode: %s", newID)
	}
	st := a.pipes.Status()
	if len(st) != 1 || st[0].LinkID != newID || len(st[0].Producers) != 1 {
		t.Errorf("a Status = %+v, want only the new link %s carrying 1 producer", st, newID)
	}
}

func TestLinkUnpipeRoom(t *testing.T) {
	ptLeakCheck(t)
	ctx := ptContext(t)
	c := newPTCluster(t, nil, "a", "b")
	a, b := c.node("a"), c.node("b")
	_, prod1 := ptPublish(ctx, t, a, "room", "alice")
	_, prod2 := ptPublish(ctx, t, a, "other", "dave")
	sub1 := ptJoin(t, b, "room", "bob")
	sub2 := ptJoin(t, b, "other", "bob")
	for _, tc := range []struct {
		room string
		prod sfu.ProducerInfo
		sub  *ptClient
	}{{"room", prod1, sub1}, {"other", prod2, sub2}} {
		if err := b.pipes.PipeIn(ctx, tc.room, tc.prod); err != nil {
			t.Fatalf("PipeIn %s: %v", tc.room, err)
		}
		ptWaitMedia(ctx, t, tc.sub, tc.prod)
	}
	b.pipes.UnpipeRoom("room")
	ptWait(ctx, t, "room unpiped", func() bool { return sub1.ev.has(sfu.EventProducerRemoved, prod1.ID) != nil })
	if got := b.pipes.Piped("other"); len(got) != 1 || got[0].ID != prod2.ID {
		t.Errorf("Piped(other) = %+v, want %s untouched", got, prod2.ID)
	}
	ptWait(ctx, t, "origin serves only the other room", func() bool {
		ls := ptLink(a, "b", DirectionOut)
		return ls != nil && len(ls.Producers) == 1 && ls.Producers[0].Room == "other"
	})
	if sub2.ev.has(sfu.EventProducerRemoved, prod2.ID) != nil {
		t.Error("producer of the other room was removed")
	}
}

func TestPipeRePipeAfterUnpipe(t *testing.T) {
	tests := []struct {
		name string
		// waitOrigin waits until the origin stopped serving before piping
		// again (removal and re-add in separate negotiations).
		waitOrigin bool
		// batch makes the removal and the re-add part of one negotiation
		// (e.g. a room closing and re-opening at once): the origin must
		// attach a fresh sender for the new pipe instance.
		batch bool
	}{
		{name: "after the origin stopped serving", waitOrigin: true},
		{name: "in the same negotiation", batch: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ptLeakCheck(t)
			ctx := ptContext(t)
			c := newPTCluster(t, func(cfg *PipesConfig) { cfg.LinkIdleTimeout = time.Minute }, "a", "b")
			a, b := c.node("a"), c.node("b")
			_, prod := ptPublish(ctx, t, a, "room", "alice")
			sub := ptJoin(t, b, "room", "bob")
			if err := b.pipes.PipeIn(ctx, "room", prod); err != nil {
				t.Fatalf("PipeIn: %v", err)
			}
			first := ptWaitMedia(ctx, t, sub, prod)
			linkID := ptLink(b, "a", DirectionIn).LinkID

			if tc.batch {
				// Keep b's link busy with a negotiation a holds, so that
				// Unpipe and PipeIn below are batched into the next one.
				release := a.holdNegotiations()
				t.Cleanup(release)
				bogus := prod
				bogus.ID = "bogus"
				busy := make(chan error, 1)
				go func() { busy <- b.pipes.PipeIn(ctx, "room", bogus) }()
				ptWait(ctx, t, "negotiation in flight", func() bool {
					for _, p := range ptLink(b, "a", DirectionIn).Producers {
						if p.ID == bogus.ID && p.State == "offered" {
							return true
						}
					}
					return false
				})
				b.pipes.Unpipe("room", prod.ID)
				again := make(chan error, 1)
				go func() { again <- b.pipes.PipeIn(ctx, "room", prod) }()
				ptWait(ctx, t, "re-pipe pending", func() bool {
					for _, p := range ptLink(b, "a", DirectionIn).Producers {
						if p.ID == prod.ID && p.State == "pending" {
							return true
						}
					}
					return false
				})
				release()
				if err := <-busy; !errors.Is(err, ErrPipeRejected) {
					t.Fatalf("bogus PipeIn: %v, want ErrPipeRejected", err)
				}
				if err := <-again; err != nil {
					t.Fatalf("PipeIn again: %v", err)
				}
			} else {
				b.pipes.Unpipe("room", prod.ID)
				if tc.waitOrigin {
					ptWait(ctx, t, "origin stops serving", func() bool {
						ls := ptLink(a, "b", DirectionOut)
						return ls != nil && len(ls.Producers) == 0
					})
				}
				if err := b.pipes.PipeIn(ctx, "room", prod); err != nil {
					t.Fatalf("PipeIn again: %v", err)
				}
			}
			ptWait(ctx, t, "media again on a new track", func() bool {
				rt := sub.track(prod.ID)
				return rt != nil && rt != first && rt.packets.Load() >= 5
			})
			ptWait(ctx, t, "pipe active again", func() bool {
				ls := ptLink(b, "a", DirectionIn)
				return ls != nil && len(ls.Producers) == 1 && ls.Producers[0].State == "active"
			})
			if ls := ptLink(b, "a", DirectionIn); ls.LinkID != linkID {
				t.Errorf("link after re-pipe = %s, want the same link %s reused", ls.LinkID, linkID)
			}
			if st := a.pipes.Status(); len(st) != 1 || len(st[0].Producers) != 1 {
				t.Errorf("a Status = %+v, want one link serving one producer", st)
			}
		})
	}
}

func TestPipeRejections(t *testing.T) {
	ptLeakCheck(t)
	ctx := ptContext(t)
	c := newPTCluster(t, nil, "a", "b", "c")
	a, b, cc := c.node("a"), c.node("b"), c.node("c")

	_, prod := ptPublish(ctx, t, a, "room", "alice")
	subB := ptJoin(t, b, "room", "bob")
	ptJoin(t, cc, "room", "carol")
	ptJoin(t, cc, "elsewhere", "carol")
	if err := b.pipes.PipeIn(ctx, "room", prod); err != nil {
		t.Fatalf("PipeIn on b: %v", err)
	}
	ptWaitMedia(ctx, t, subB, prod)

	onward := prod
	onward.Origin = "b" // b has it, but only as a piped (remote) producer
	unknown := prod
	unknown.ID = "no-such-producer"

	tests := []struct {
		name   string
		room   string
		info   sfu.ProducerInfo
		reason string
	}{
		{"remote producer is never served onward", "room", onward, RejectRemoteProducer},
		{"unknown producer", "room", unknown, RejectUnknownProducer},
		{"room unknown at origin", "elsewhere", prod, RejectRoomNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := cc.pipes.PipeIn(ctx, tc.room, tc.info)
			var rej *RejectedError
			if !errors.As(err, &rej) || !errors.Is(err, ErrPipeRejected) {
				t.Fatalf("PipeIn error = %v, want a *RejectedError", err)
			}
			if rej.Reason != tc.reason || rej.Origin != tc.info.Origin {
				t.Errorf("rejection = %+v, want reason %s from %s", *rej, tc.reason, tc.info.Origin)
			}
			if ptHasProducer(cc, tc.room, tc.info.ID) {
				t.Error("rejected producer was added on c")
			}
		})
	}
	if ls := ptLink(b, "c", DirectionOut); ls != nil && len(ls.Producers) != 0 {
		t.Errorf("b serves %+v to c, want nothing", ls.Producers)
	}
}
