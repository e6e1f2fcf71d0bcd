package load

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestClientAPI drives the client directly: a publisher and a subscriber in
// one room; the subscriber gets both tracks, keyed like the protocol says
// (stream id = publisher's participant id), with media and a join time.
func TestClientAPI(t *testing.T) {
	url := startNode(t)
	env, err := NewEnv(true, nil)
	if err != nil {
		t.Fatalf("NewEnv: %v", err)
	}
	media, err := LoadMedia(smallClip)
	if err != nil {
		t.Fatalf("LoadMedia: %v", err)
	}
	ctx := context.Background()
	pub, err := Join(ctx, env, ClientConfig{URL: url, Room: "api", Name: "pub"})
	if err != nil {
		t.Fatalf("Join pub: %v", err)
	}
	defer pub.Close()
	if err := pub.Publish(ctx, media); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if err := pub.Publish(ctx, media); err == nil {
		t.Error("second Publish succeeded")
	}
	sub, err := Join(ctx, env, ClientConfig{URL: url, Room: "api", Name: "sub"})
	if err != nil {
		t.Fatalf("Join sub: %v", err)
	}
	defer sub.Close()
	if sub.Node() != "load-test" || sub.ID() == "" || sub.ID() == pub.ID() {
		t.Errorf("sub node %q id %q, pub id %q", sub.Node(), sub.ID(), pub.ID())
	}

	deadline := time.Now().Add(15 * time.Second)
	for len(sub.Tracks()) < 2 || sub.Received() < 20 {
		if time.Now().After(deadline) {
			t.Fatalf("after 15s: tracks %v, %d packets", sub.Tracks(), sub.Received())
		}
		time.Sleep(20 * time.Millisecond)
	}
	var kinds []string
	for _, tr := range sub.Tracks() {
		if tr.Publisher != pub.ID() || tr.ID == "" {
			t.Errorf("track %+v, want publisher %s", tr, pub.ID())
		}
		kinds = append(kinds, tr.Kind)
	}
	slices.Sort(kinds)
	if !slices.Equal(kinds, []string{"audio", "video"}) {
		t.Errorf("kinds %v", kinds)
	}
	if d, ok := sub.JoinTime(); !ok || d <= 0 {
		t.Errorf("JoinTime = %v, %v", d, ok)
	}
	if pub.Received() != 0 {
		t.Errorf("the publisher received %d packets from nobody", pub.Received())
	}
	if err := sub.Close(); err != nil {
		t.Errorf("Close sub: %v", err)
	}
	if err := sub.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := pub.Close(); err != nil {
		t.Errorf("Close pub: %v", err)
	}
	if msgs, n := sub.Errors(); n != 0 || sub.Err() != nil {
		t.Errorf("sub errors %d %v, %v", n, msgs, sub.Err())
	}
}

// TestJoinErrors checks that refused joins come back as errors naming the
// cause, without leaving anything behind.
func TestJoinErrors(t *testing.T) {
	url := startNode(t)
	env, err := NewEnv(true, nil)
	if err != nil {
		t.Fatalf("NewEnv: %v", err)
	}
	tests := []struct {
		name string
		cfg  ClientConfig
		want string
	}{
		{"invalid name", ClientConfig{URL: url, Room: "r", Name: " "}, "invalid-name"},
		{"bad room", ClientConfig{URL: url, Room: "no way!", Name: "a"}, "400"},
		{"no server", ClientConfig{URL: "http://127.0.0.1:1", Room: "r", Name: "a"}, "dial"},
		{"bad url", ClientConfig{URL: "gopher://x", Room: "r", Name: "a"}, "scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Join(context.Background(), env, tt.cfg)
			if err == nil {
				c.Close()
				t.Fatal("Join succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Join error %v, want it to mention %q", err, tt.want)
			}
		})
	}
}
