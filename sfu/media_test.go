package sfu

import (
	"testing"
)

// TestForwardToTwoSubscribers: a publisher's video reaches two subscribers.
func TestForwardToTwoSubscribers(t *testing.T) {
	ctx := testContext(t)
	e := newTestEngine(t, nil)
	pub := joinClient(t, e, "r1", "alice")
	sub1 := joinClient(t, e, "r1", "bob")
	pub.publishVP8(ctx)
	prods := waitProducers(ctx, t, pub.p.Room(), 1)
	if got := prods[0]; got.Kind != KindVideo || got.ParticipantID != pub.p.ID() || got.Remote || got.Origin != "node-a" ||
		got.ParticipantName != "alice" || got.Codec.MimeType != "video/VP8" {
		t.Fatalf("producer info = %+v", got)
	}
	sub2 := joinClient(t, e, "r1", "carol") // joins after the producer exists
	for _, c := range []*client{sub1, sub2} {
		waitMedia(ctx, t, c, prods[0])
	}
	if n := sub1.rec.count(isProducerEvent(EventProducerAdded, prods[0].ID)); n != 1 {
		t.Errorf("sub1 producer-added events = %d, want 1", n)
	}
	_, initProds := sub2.p.InitialState()
	if len(initProds) != 1 || initProds[0].ID != prods[0].ID {
		t.Errorf("sub2 initial producers = %+v", initProds)
	}
	if n := pub.rec.count(isType(EventProducerAdded)); n != 0 {
		t.Errorf("publisher got %d producer-added events for its own producer", n)
	}
}
