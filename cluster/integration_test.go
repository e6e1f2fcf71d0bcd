package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confab/confab/cluster/pipe"
	"github.com/confab/confab/internal/peer"
	"github.com/confab/confab/sfu"
	"github.com/hashicorp/consul/api"
	"github.com/pion/ice/v4"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Cross-node integration tests: several full nodes (sfu.Engine + cluster.Node
// + HTTP server) in one process, sharing the test binary's Consul agent, with
// in-process pion clients joined through the sfu API.

// itTrack is a track received by a client's subscriber PC.
type itTrack struct {
	id, streamID string
	ssrc         uint32
	packets      atomic.Int64
}

// itClient is an in-process WebRTC client of one node: it answers subscriber
// offers, records events and received tracks, and can publish synthetic VP8
// tracks while counting the PLIs its publisher receives.
type itClient struct {
	t    itT
	name string
	api  *webrtc.API
	p    *sfu.Participant

	offers chan webrtc.SessionDescription
	stop   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once

	sub *peer.Answerer // the subscriber PC

	mu     sync.Mutex
	events []sfu.Event
	pub    *webrtc.PeerConnection
	tracks []*itTrack
	plis   int
}

// itT is what itClient needs of a *testing.T; the child node process
// (child_test.go) provides its own.
type itT interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Fatal(args ...any)
	Cleanup(func())
}

// itJoin joins a client named name to room on node n; the test's cleanup
// closes it.
func itJoin(t itT, n *testNode, room, name string) *itClient {
	t.Helper()
	return itJoinEngine(t, n.engine, room, name)
}

// itJoinEngine joins a client named name to room on engine.
func itJoinEngine(t itT, engine *sfu.Engine, room, name string) *itClient {
	t.Helper()
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	wapi, err := sfu.NewAPI(se)
	if err != nil {
		t.Fatalf("sfu.NewAPI: %v", err)
	}
	c := &itClient{t: t, name: name, api: wapi, offers: make(chan webrtc.SessionDescription, 256), stop: make(chan struct{})}
	c.sub = peer.NewAnswerer(wapi, c.onTrack)
	p, err := engine.Join(room, sfu.JoinParams{Name: name, Events: c})
	if err != nil {
		t.Fatalf("%s joins %s on %s: %v", name, room, engine.NodeID(), err)
	}
	c.p = p
	c.wg.Add(1)
	go c.answerLoop()
	t.Cleanup(c.close)
	return c
}

// HandleEvent implements sfu.EventHandler; it never blocks.
func (c *itClient) HandleEvent(ev sfu.Event) {
	c.mu.Lock()
	c.events = append(c.events, ev)
	c.mu.Unlock()
	if ev.Type == sfu.EventSubscriberOffer && ev.SDP != nil {
		select {
		case c.offers <- *ev.SDP:
		default:
			c.t.Errorf("%s: subscriber offer dropped (queue full)", c.name)
		}
	}
}

// hasEvent reports whether an event of typ about producer id was received.
func (c *itClient) hasEvent(typ sfu.EventType, producerID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range c.events {
		if ev.Type == typ && ev.Producer != nil && ev.Producer.ID == producerID {
			return true
		}
	}
	return false
}

// close leaves and releases everything; idempotent.
func (c *itClient) close() {
	c.once.Do(func() {
		c.p.Close()
		close(c.stop)
		_ = c.sub.Close()
		c.mu.Lock()
		pub := c.pub
		c.mu.Unlock()
		if pub != nil {
			_ = pub.Close()
		}
		c.wg.Wait()
	})
}

// answerLoop answers subscriber offers until the client closes.
func (c *itClient) answerLoop() {
	defer c.wg.Done()
	c.sub.Serve(c.offers, c.stop, c.p.SetSubscriberAnswer, func(err error) {
		if !errors.Is(err, sfu.ErrParticipantClosed) {
			c.t.Errorf("%s: answer subscriber offer: %v", c.name, err)
		}
	})
}

// onTrack runs on pion's goroutine and reads until the PC closes.
func (c *itClient) onTrack(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	rt := &itTrack{id: tr.ID(), streamID: tr.StreamID(), ssrc: uint32(tr.SSRC())}
	c.mu.Lock()
	c.tracks = append(c.tracks, rt)
	c.mu.Unlock()
	for {
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		if len(pkt.Payload) > 0 {
			rt.packets.Add(1)
		}
	}
}

// track returns the latest received track with that id, or nil.
func (c *itClient) track(id string) *itTrack {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.tracks) - 1; i >= 0; i-- {
		if c.tracks[i].id == id {
			return c.tracks[i]
		}
	}
	return nil
}

func (c *itClient) pliCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.plis
}

// sendPLI asks for a keyframe of a received track.
func (c *itClient) sendPLI(rt *itTrack) error {
	return c.sub.PC().WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: rt.ssrc}})
}

// publishVP8 adds one synthetic VP8 track to the client's publisher PC
// (creating it on first use), negotiates it with Publish, and writes a packet
// every 10ms until the client closes. PLIs received for it are counted.
func (c *itClient) publishVP8(ctx context.Context, trackID string) {
	t := c.t
	t.Helper()
	c.mu.Lock()
	pc := c.pub
	c.mu.Unlock()
	if pc == nil {
		var err error
		if pc, err = c.api.NewPeerConnection(webrtc.Configuration{}); err != nil {
			t.Fatalf("client pc: %v", err)
		}
		c.mu.Lock()
		c.pub = pc
		c.mu.Unlock()
	}
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, trackID, c.name)
	if err != nil {
		t.Fatalf("track: %v", err)
	}
	sender, err := pc.AddTrack(track)
	if err != nil {
		t.Fatalf("AddTrack: %v", err)
	}
	if err := peer.Publish(ctx, pc, c.p.Publish); err != nil {
		t.Fatalf("publish: %v", err)
	}
	c.wg.Add(2)
	go func() { // RTCP reader: counts PLIs
		defer c.wg.Done()
		for {
			pkts, _, err := sender.ReadRTCP()
			if err != nil {
				return
			}
			for _, pkt := range pkts {
				if _, ok := pkt.(*rtcp.PictureLossIndication); ok {
					c.mu.Lock()
					c.plis++
					c.mu.Unlock()
				}
			}
		}
	}()
	go func() { // RTP writer
		defer c.wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		payload := []byte{0x10, 0x00, 0x9d, 0x01, 0x2a, 1, 2, 3, 4, 5, 6, 7, 8}
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, Marker: true}, Payload: payload}
		for {
			select {
			case <-c.stop:
				return
			case <-tick.C:
			}
			pkt.SequenceNumber++
			pkt.Timestamp += 3000
			if err := track.WriteRTP(pkt); err != nil && errors.Is(err, net.ErrClosed) {
				return
			}
		}
	}()
}

// itLocalProducers waits until the room on n has want local producers of
// participant pid and returns them sorted by id.
func itLocalProducers(ctx context.Context, t itT, n *testNode, room, pid string, want int) []sfu.ProducerInfo {
	t.Helper()
	var ps []sfu.ProducerInfo
	waitFor(ctx, t, "local producers on "+n.id, func() bool {
		ps = ps[:0]
		if r := n.engine.Room(room); r != nil {
			for _, p := range r.Producers() {
				if !p.Remote && p.ParticipantID == pid {
					ps = append(ps, p)
				}
			}
		}
		return len(ps) == want
	})
	slices.SortFunc(ps, func(a, b sfu.ProducerInfo) int { return strings.Compare(a.ID, b.ID) })
	return ps
}

// itWaitMedia waits until c receives packets of prod.
func itWaitMedia(ctx context.Context, t itT, c *itClient, prod sfu.ProducerInfo) *itTrack {
	t.Helper()
	var rt *itTrack
	waitFor(ctx, t, c.name+" receives media of "+prod.ID, func() bool {
		rt = c.track(prod.ID)
		return rt != nil && rt.packets.Load() >= 5
	})
	if rt.streamID != prod.ParticipantID {
		t.Errorf("%s: stream id %q, want participant id %q", c.name, rt.streamID, prod.ParticipantID)
	}
	return rt
}

// itStatus returns n's status.
func itStatus(ctx context.Context, t testing.TB, n *testNode) Status {
	t.Helper()
	st, err := n.node.Status(ctx)
	if err != nil {
		t.Fatalf("status of %s: %v", n.id, err)
	}
	return st
}

// itLinks returns n's link with peer if it carries producers in direction
// dir (one link per node pair carries both directions), with only those
// producers listed.
func itLinks(ctx context.Context, t *testing.T, n *testNode, peer, dir string) []pipe.LinkStatus {
	t.Helper()
	var out []pipe.LinkStatus
	for _, l := range itStatus(ctx, t, n).Links {
		if l.PeerNode != peer {
			continue
		}
		l.Producers = slices.DeleteFunc(l.Producers, func(p pipe.PipedProducer) bool { return p.Direction != dir })
		if len(l.Producers) > 0 {
			out = append(out, l)
		}
	}
	return out
}

// itPiped returns the ids of the producers piped into room on n (room's
// remote producers).
func itPiped(n *testNode, room string) []string {
	var ids []string
	if r := n.engine.Room(room); r != nil {
		for _, p := range r.Producers() {
			if p.Remote {
				ids = append(ids, p.ID)
			}
		}
	}
	slices.Sort(ids)
	return ids
}

// itWaitCluster waits until every node sees every other one alive.
func itWaitCluster(ctx context.Context, t testing.TB, nodes ...*testNode) {
	t.Helper()
	for _, n := range nodes {
		waitFor(ctx, t, n.id+" sees the whole cluster", func() bool {
			alive := 0
			for _, ni := range itStatus(ctx, t, n).Nodes {
				if ni.Alive {
					alive++
				}
			}
			return alive == len(nodes)
		})
	}
}

func TestIntegrationCluster(t *testing.T) {
	a := consulForTest(t)
	checkLeaks(t)
	ctx := testContext(t)

	na := startTestNode(ctx, t, a, "node-a")
	nb := startTestNode(ctx, t, a, "node-b")
	nc := startTestNode(ctx, t, a, "node-c")
	itWaitCluster(ctx, t, na, nb, nc)

	t.Log("an unauthenticated control request is refused without a state change")
	body := []byte(`{"linkId":"evil","offer":{"type":"offer","sdp":"v=0"},"wanted":[{"room":"demo","producerId":"x"}]}`)
	for _, hdr := range []map[string]string{
		{},
		{"X-Confab-Node": "node-b", "X-Confab-Timestamp": "1", "X-Confab-Signature": strings.Repeat("0", 64)},
	} {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, na.srv.URL+"/cluster/v1/links/node-b/negotiate", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("control request: %v", err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("unauthenticated negotiate = %d, want 401", resp.StatusCode)
		}
	}
	if links := itStatus(ctx, t, na).Links; len(links) != 0 {
		t.Fatalf("node-a has links after refused requests: %+v", links)
	}
	http.DefaultClient.CloseIdleConnections()

	t.Log("a room on one node alone is not piped anywhere")
	solo := itJoin(t, na, "solo", "Solo")
	solo.publishVP8(ctx, "solo-cam")
	soloProd := itLocalProducers(ctx, t, na, "solo", solo.p.ID(), 1)[0]
	waitFor(ctx, t, "solo producer record", func() bool { return kvHas(t, a, producerKey("solo", "node-a", soloProd.ID)) })

	t.Log("a producer on A reaches a subscriber on C")
	alice := itJoin(t, na, "demo", "Alice")
	alice.publishVP8(ctx, "cam1")
	p1 := itLocalProducers(ctx, t, na, "demo", alice.p.ID(), 1)[0]
	carol := itJoin(t, nc, "demo", "Carol")
	carolP1 := itWaitMedia(ctx, t, carol, p1)
	if !carol.hasEvent(sfu.EventProducerAdded, p1.ID) {
		t.Error("carol got no producer-added for p1")
	}

	t.Log("PLI from a client on C reaches the publisher on A")
	base := alice.pliCount()
	waitFor(ctx, t, "PLI from carol at alice", func() bool {
		if err := carol.sendPLI(carolP1); err != nil {
			t.Fatalf("send PLI: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // pacing only: the engine throttles PLIs per producer
		return alice.pliCount() >= base+2
	})

	t.Log("the producer reaches a subscriber on B too")
	bob := itJoin(t, nb, "demo", "Bob")
	itWaitMedia(ctx, t, bob, p1)
	inB := itLinks(ctx, t, nb, "node-a", pipe.DirectionIn)
	if len(inB) != 1 {
		t.Fatalf("node-b in-links from node-a = %+v, want 1", inB)
	}
	linkID := inB[0].LinkID

	t.Log("a second producer from A to B reuses the same link")
	alice.publishVP8(ctx, "cam2")
	ps := itLocalProducers(ctx, t, na, "demo", alice.p.ID(), 2)
	p2 := ps[0]
	if p2.ID == p1.ID {
		p2 = ps[1]
	}
	itWaitMedia(ctx, t, bob, p2)
	itWaitMedia(ctx, t, carol, p2)
	inB = itLinks(ctx, t, nb, "node-a", pipe.DirectionIn)
	if len(inB) != 1 || inB[0].LinkID != linkID || len(inB[0].Producers) != 2 {
		t.Fatalf("node-b in-links from node-a = %+v, want the one link %s carrying 2 producers", inB, linkID)
	}
	if out := itLinks(ctx, t, na, "node-b", pipe.DirectionOut); len(out) != 1 || out[0].LinkID != linkID {
		t.Fatalf("node-a out-links to node-b = %+v", out)
	}
	for _, n := range []*testNode{nb, nc} {
		st := itStatus(ctx, t, n)
		var room *RoomStatus
		for i := range st.Rooms {
			if st.Rooms[i].Name == "demo" {
				room = &st.Rooms[i]
			}
		}
		if room == nil || len(room.PipedProducers) != 2 || room.PipedProducers[0].Origin != "node-a" {
			t.Fatalf("%s status room demo = %+v", n.id, room)
		}
	}

	t.Log("after a link failure the producers are piped again over a new link")
	oldP1, oldP2 := bob.track(p1.ID), bob.track(p2.ID)
	// What pipe.Pipes does when a link fails: tear it down, then report it.
	nb.node.pipes.DropNode("node-a")
	nb.node.onLinkFailed("node-a")
	for _, p := range []sfu.ProducerInfo{p1, p2} {
		old := oldP1
		if p.ID == p2.ID {
			old = oldP2
		}
		waitFor(ctx, t, "bob receives "+p.ID+" again", func() bool {
			rt := bob.track(p.ID)
			return rt != nil && rt != old && rt.packets.Load() >= 5
		})
	}
	inB = itLinks(ctx, t, nb, "node-a", pipe.DirectionIn)
	if len(inB) != 1 || inB[0].LinkID == linkID || len(inB[0].Producers) != 2 {
		t.Fatalf("node-b in-links from node-a after the failure = %+v, want one new link carrying 2 producers", inB)
	}

	t.Log("the publisher leaves A: its producers disappear on B and C")
	alice.close()
	for _, c := range []*itClient{bob, carol} {
		for _, p := range []sfu.ProducerInfo{p1, p2} {
			waitFor(ctx, t, c.name+" gets producer-removed "+p.ID, func() bool { return c.hasEvent(sfu.EventProducerRemoved, p.ID) })
		}
	}
	for _, n := range []*testNode{nb, nc} {
		waitFor(ctx, t, "no piped producers left on "+n.id, func() bool { return len(itPiped(n, "demo")) == 0 })
	}
	waitFor(ctx, t, "producer records deleted", func() bool {
		return len(kvKeys(t, a, roomPrefix("demo")+roomProdDir)) == 0
	})

	t.Log("the solo room was never piped")
	for _, n := range []*testNode{na, nb, nc} {
		for _, l := range itStatus(ctx, t, n).Links {
			for _, p := range l.Producers {
				if p.Room == "solo" {
					t.Fatalf("%s link %+v carries the solo room's producer", n.id, l)
				}
			}
		}
	}
	if nb.engine.Room("solo") != nil || nc.engine.Room("solo") != nil {
		t.Fatal("solo room exists on another node")
	}
	if keys := kvKeys(t, a, roomPrefix("solo")+roomNodesDir); len(keys) != 1 || keys[0] != roomNodeKey("solo", "node-a") {
		t.Fatalf("solo room records = %v", keys)
	}
	solo.close()
}

// TestIntegrationStaleNode: records left by a dead node id (its session not
// yet expired) make the other nodes try, and fail, to pipe a ghost
// producer; the failed link makes them probe the node, which does not
// answer, so they mark it unreachable and stop trying. When the id starts
// again the records are cleared and the ghost is dropped everywhere.
func TestIntegrationStaleNode(t *testing.T) {
	a := consulForTest(t)
	checkLeaks(t)
	ctx := testContext(t)

	// The dead node's records, held by its still-valid session; its URL
	// points at a closed port.
	dead, _, err := a.client.Session().Create(&api.SessionEntry{Name: "confab-node-d", TTL: "120s", Behavior: api.SessionBehaviorDelete, LockDelay: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ports, err := freeConsulPorts()
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://127.0.0.1:" + strconv.Itoa(ports.http)
	ghost := sfu.ProducerInfo{ID: "ghost", Kind: sfu.KindVideo, ParticipantID: "ghost-user", ParticipantName: "Ghost",
		Codec: sfu.Codec{MimeType: "video/VP8", ClockRate: 90000}, Origin: "node-d"}
	ghostJSON, err := encodeProducer("node-d", ghost)
	if err != nil {
		t.Fatal(err)
	}
	recJSON, _ := json.Marshal(nodeRecord{ID: "node-d", URL: deadURL, Version: "old", StartedAt: time.Now().Add(-time.Hour).UTC()})
	for k, v := range map[string][]byte{
		nodeKey("node-d"):                      recJSON,
		roomNodeKey("demo", "node-d"):          []byte("{}"),
		producerKey("demo", "node-d", "ghost"): ghostJSON,
	} {
		if ok, _, err := a.client.KV().Acquire(&api.KVPair{Key: k, Value: v, Session: dead}, nil); err != nil || !ok {
			t.Fatalf("acquire %s: %v %v", k, ok, err)
		}
	}

	nb := startTestNode(ctx, t, a, "node-b")
	bob := itJoin(t, nb, "demo", "Bob")
	_ = bob
	// node-b knows the dead node, fails to pipe the ghost, probes the dead
	// node's control channel (refused) and marks it unreachable: it stops
	// trying until the record changes.
	waitFor(ctx, t, "node-b marks the ghost's node unreachable", func() bool {
		for _, ni := range itStatus(ctx, t, nb).Nodes {
			if ni.ID == "node-d" && !ni.Alive && ni.URL == deadURL {
				return true
			}
		}
		return false
	})
	waitFor(ctx, t, "node-b watched the ghost", func() bool {
		nb.node.mu.Lock()
		w := nb.node.rooms["demo"]
		nb.node.mu.Unlock()
		if w == nil {
			return false
		}
		return w.hasPeer("node-d")
	})

	// The id starts again.
	nd := startTestNode(ctx, t, a, "node-d")
	if kvHas(t, a, producerKey("demo", "node-d", "ghost")) || kvHas(t, a, roomNodeKey("demo", "node-d")) {
		t.Fatal("stale records of node-d survived its restart")
	}
	rec, ok := readNodeRecord(t, a, "node-d")
	if !ok || rec.URL != nd.srv.URL {
		t.Fatalf("node-d record = %+v, %v", rec, ok)
	}
	waitFor(ctx, t, "node-b sees node-d's new life", func() bool {
		for _, ni := range itStatus(ctx, t, nb).Nodes {
			if ni.ID == "node-d" && ni.Alive && ni.URL == nd.srv.URL {
				return true
			}
		}
		return false
	})
	waitFor(ctx, t, "node-b no longer tries to pipe the ghost", func() bool {
		return !slices.ContainsFunc(nb.node.pipes.Piped("demo"), func(p sfu.ProducerInfo) bool { return p.ID == "ghost" })
	})
	if slices.Contains(itPiped(nb, "demo"), "ghost") {
		t.Fatal("the ghost producer appeared in node-b's room")
	}
	// node-d's new life serves media normally: a producer there reaches Bob.
	dora := itJoin(t, nd, "demo", "Dora")
	dora.publishVP8(ctx, "cam")
	pd := itLocalProducers(ctx, t, nd, "demo", dora.p.ID(), 1)[0]
	itWaitMedia(ctx, t, bob, pd)
}

// TestIntegrationNodeDeath: a node crashes in-process (no clean shutdown of
// its membership: no session destroy, no renewals); the other node drops
// its producers (through its links, see TestIntegrationNodeKill for kill -9
// of a real process) and, once Consul expires the session (between TTL and
// 2×TTL), the dead node's records vanish and it is listed dead.
func TestIntegrationNodeDeath(t *testing.T) {
	a := consulForTest(t)
	checkLeaks(t)
	ctx := testContext(t)
	na := startTestNode(ctx, t, a, "node-a")
	nb := startTestNode(ctx, t, a, "node-b")
	itWaitCluster(ctx, t, na, nb)
	alice := itJoin(t, na, "demo", "Alice")
	alice.publishVP8(ctx, "cam")
	p := itLocalProducers(ctx, t, na, "demo", alice.p.ID(), 1)[0]
	bob := itJoin(t, nb, "demo", "Bob")
	itWaitMedia(ctx, t, bob, p)

	// Crash node-a: its goroutines stop (no renewals, no cleanup), its
	// HTTP server and media engine go away.
	crashed := time.Now()
	na.node.cancel()
	na.node.wg.Wait()
	na.srv.Close()
	alice.close()
	if err := na.engine.Close(); err != nil {
		t.Fatalf("engine close: %v", err)
	}
	t.Log("waiting for Consul to expire node-a's session (up to 2×TTL)")
	waitFor(ctx, t, "bob's producer removed", func() bool { return bob.hasEvent(sfu.EventProducerRemoved, p.ID) })
	t.Logf("crashed node's producer removed on node-b %v after the crash", time.Since(crashed).Round(10*time.Millisecond))
	waitFor(ctx, t, "node-a's records expire", func() bool { _, ok := readNodeRecord(t, a, "node-a"); return !ok })
	t.Logf("Consul expired the crashed node's session %v after the crash (TTL %v: expiry between TTL and 2×TTL)",
		time.Since(crashed).Round(100*time.Millisecond), DefaultSessionTTL)
	if keys := kvKeys(t, a, roomPrefix("demo")+roomProdDir); len(keys) != 0 {
		t.Fatalf("producer records of the dead node survive: %v", keys)
	}
	waitFor(ctx, t, "bob's producer removed", func() bool { return bob.hasEvent(sfu.EventProducerRemoved, p.ID) })
	waitFor(ctx, t, "node-b sees node-a dead", func() bool {
		for _, ni := range itStatus(ctx, t, nb).Nodes {
			if ni.ID == "node-a" {
				return !ni.Alive
			}
		}
		return false
	})
	waitFor(ctx, t, "no piped producers or links left on node-b", func() bool {
		return len(itPiped(nb, "demo")) == 0 && len(nb.node.pipes.Piped("demo")) == 0 && len(itLinks(ctx, t, nb, "node-a", pipe.DirectionIn)) == 0
	})
}
