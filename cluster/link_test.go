package cluster

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
	c := newPTCluster(t, func(cfg *PipesConfig) { cfg.RequestTimeout = 2 * time.Second }, "a", "b")
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
