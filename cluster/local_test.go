package cluster

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/confab/confab/sfu"
)

func TestLocal(t *testing.T) {
	checkLeaks(t)
	engine, err := sfu.New(sfu.Config{NodeID: "solo", UDPAddr: "127.0.0.1:0", IncludeLoopback: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	l := NewLocal(engine)
	engine.SetObserver(l)
	ctx := context.Background()
	if err := l.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := l.Ready(); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if err := l.Drain(context.Background()); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if err := l.Ready(); err != nil {
		t.Fatalf("Ready after the no-op Drain: %v", err)
	}
	p, err := engine.Join("demo", sfu.JoinParams{Name: "Alice", Events: nopEvents})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// Observer methods are no-ops (and must not panic).
	l.ProducerAdded(engine.Room("demo"), sfu.ProducerInfo{ID: "x"})
	l.ProducerRemoved("demo", sfu.ProducerInfo{ID: "x"})

	st, err := l.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.NodeID != "solo" || st.Mode != "single-node" || len(st.Nodes) != 1 || st.Nodes[0].ID != "solo" ||
		!st.Nodes[0].Alive || !st.Nodes[0].Self || st.Nodes[0].Load != 1 || st.Links == nil || len(st.Links) != 0 || st.Consul != nil {
		t.Fatalf("Status = %+v", st)
	}
	if len(st.Rooms) != 1 || st.Rooms[0].Name != "demo" || len(st.Rooms[0].Participants) != 1 ||
		st.Rooms[0].LocalProducers == nil || st.Rooms[0].PipedProducers == nil || st.Rooms[0].Nodes == nil {
		t.Fatalf("Status rooms = %+v", st.Rooms)
	}

	for _, path := range []string{"/cluster/", "/cluster/v1/links/x/negotiate"} {
		rec := httptest.NewRecorder()
		l.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, nil))
		if rec.Code != http.StatusNotFound {
			t.Errorf("POST %s = %d, want 404", path, rec.Code)
		}
	}
	p.Close()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
