package pipe

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/confab/confab/sfu"
)

// TestPipesPing: the liveness probe succeeds only with a signed answer from
// the node asked, and fails fast for a closed port, a peer that never
// answers (within ProbeTimeout), another cluster's node and an impostor.
func TestPipesPing(t *testing.T) {
	ptLeakCheck(t)
	ctx := ptContext(t)
	c := newPTCluster(t, func(cfg *PipesConfig) { cfg.ProbeTimeout = 500 * time.Millisecond }, "a", "b")
	b := c.node("b")
	if err := b.pipes.Ping(ctx, "a"); err != nil {
		t.Fatalf("Ping of a live node: %v", err)
	}
	c.addNode("other", func(cfg *PipesConfig) { cfg.Secret = []byte("another-cluster-secret-0123") })

	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close() // nothing listens there any more
	c.setURL("closed", closed.URL)
	c.setURL("hung", ptBlackHole(t).URL)
	c.setURL("impostor", c.node("a").srv.URL) // answers, signed as "a"
	for _, peer := range []string{"closed", "hung", "other", "impostor", "unknown-node"} {
		start := time.Now()
		err := b.pipes.Ping(ctx, peer)
		if err == nil {
			t.Errorf("Ping of %s succeeded", peer)
			continue
		}
		t.Logf("Ping %s failed after %v: %v", peer, time.Since(start).Round(time.Millisecond), err)
	}
	// The other cluster's node refuses the ping, but its refusal is not
	// signed with this cluster's secret: no answer at all.
	if err := b.pipes.Ping(ctx, "other"); !errors.Is(err, ErrControlBadResponse) {
		t.Errorf("Ping of another cluster's node = %v, want ErrControlBadResponse", err)
	}
	if err := b.pipes.Ping(ctx, "unknown-node"); !errors.Is(err, ErrNodeUnresolved) {
		t.Errorf("Ping of an unknown node = %v, want ErrNodeUnresolved", err)
	}
	if st := c.node("a").pipes.Status(); len(st) != 0 {
		t.Errorf("pings created links: %+v", st)
	}
}

// TestAuthPingRefused: the ping route needs a valid signature like every
// other route, and a replayed ping is refused.
func TestAuthPingRefused(t *testing.T) {
	ptLeakCheck(t)
	c := newPTCluster(t, nil, "a")
	a := c.node("a")
	c.setURL("b", "http://127.0.0.1:1") // in a's directory
	defer http.DefaultClient.CloseIdleConnections()
	path := controlPrefix + "ping"
	unsigned, _ := http.NewRequest(http.MethodGet, a.srv.URL+path, nil)
	if status, code := ptDo(t, unsigned); status != http.StatusUnauthorized || code != "unauthorized" {
		t.Errorf("unsigned ping = %d %q, want 401 unauthorized", status, code)
	}
	stale := ptSignedRequest(t, a.srv.URL, http.MethodGet, path, "b", "a", ptSecret, nil, time.Now().Add(-2*DefaultPipeMaxClockSkew))
	if status, _ := ptDo(t, stale); status != http.StatusUnauthorized {
		t.Errorf("ping with an old timestamp = %d, want 401", status)
	}
	ok := ptSignedRequest(t, a.srv.URL, http.MethodGet, path, "b", "a", ptSecret, nil, time.Now())
	replay := ok.Clone(ok.Context())
	if status, _ := ptDo(t, ok); status != http.StatusOK {
		t.Fatalf("signed ping = %d, want 200", status)
	}
	if status, _ := ptDo(t, replay); status != http.StatusUnauthorized {
		t.Errorf("replayed ping = %d, want 401", status)
	}
}

// TestLinkPeerVanishesAfterAnswer: the origin answers the negotiation (a
// valid, signed answer accepting the producer) and then vanishes before any
// media flows: ICE never connects. The link fails once ICE gives up
// (sfu.Config ICE timeouts), the failure is reported, nothing is left
// behind (links, pipes, goroutines).
func TestLinkPeerVanishesAfterAnswer(t *testing.T) {
	ptLeakCheck(t)
	ctx := ptContext(t)
	c := newPTCluster(t, nil, "b")
	b := c.node("b")
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	api, err := sfu.NewAPI(se)
	if err != nil {
		t.Fatal(err)
	}
	answered := make(chan struct{}, 1)
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req negotiateRequest
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		pc, err := api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer func() { _ = pc.Close() }() // the origin vanishes right after answering
		if err := pc.SetRemoteDescription(req.Offer); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		answer, err := pc.CreateAnswer(nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		gathered := webrtc.GatheringCompletePromise(pc)
		if err := pc.SetLocalDescription(answer); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		<-gathered
		resp := negotiateResponse{Side: "fake-side", Answer: *pc.LocalDescription(), Accepted: []AcceptedPipe{}, Rejected: []RejectedPipe{}}
		for _, wp := range req.Wanted {
			resp.Accepted = append(resp.Accepted, AcceptedPipe{Room: wp.Room, ProducerID: wp.ProducerID, PipeID: wp.PipeID})
		}
		out, _ := json.Marshal(resp)
		signResponse(ptSecret, w.Header(), http.StatusOK, r.Header.Get(HeaderSignature), "fake", out, time.Now())
		w.Header().Set("Content-Type", contentTypeJSON)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(out)
		select {
		case answered <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(fake.Close)
	c.setURL("fake", fake.URL)
	ptJoin(t, b, "room", "bob")

	info := sfu.ProducerInfo{ID: "p1", Kind: sfu.KindVideo, ParticipantID: "x", ParticipantName: "X", Origin: "fake"}
	if err := b.pipes.PipeIn(ctx, "room", info); err != nil {
		t.Fatalf("PipeIn: %v (the fake origin accepts)", err)
	}
	<-answered
	vanished := time.Now()
	ptWait(ctx, t, "link failure reported", func() bool { return slices.Equal(b.failures(), []string{"fake"}) })
	t.Logf("link to an origin that vanished after answering failed %v later (ICE disconnected %v + failed %v)",
		time.Since(vanished).Round(10*time.Millisecond), sfu.DefaultICEDisconnectedTimeout, sfu.DefaultICEFailedTimeout)
	if st := b.pipes.Status(); len(st) != 0 {
		t.Errorf("Status = %+v, want no links", st)
	}
	if got := b.pipes.Piped("room"); len(got) != 0 {
		t.Errorf("Piped = %+v, want none", got)
	}
	if ptHasProducer(b, "room", "p1") {
		t.Error("the never-arrived producer was added")
	}
}
