package pipe

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/confab/confab/internal/peer"
	"github.com/confab/confab/sfu"
)

// Tests of the one bidirectional link per node pair: both nodes pull from
// each other over one PeerConnection (the case that broke with one PC per
// direction sharing the engines' UDP sockets), a full mesh, concurrent
// changes from both roles, and replacement of stale link state.

// ptMisrouteCounter is the engine log handler of test nodes: it counts
// misrouted-packet records into n.misrouted and passes everything on.
type ptMisrouteCounter struct {
	n    *ptNode
	next slog.Handler
}

// Enabled implements slog.Handler: pion reports these at warning level.
func (h ptMisrouteCounter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || h.next.Enabled(ctx, l)
}

// Handle implements slog.Handler.
func (h ptMisrouteCounter) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "auth tag") || strings.Contains(r.Message, "wrong username") {
		h.n.misrouted.Add(1)
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

// WithAttrs implements slog.Handler.
func (h ptMisrouteCounter) WithAttrs(as []slog.Attr) slog.Handler {
	return ptMisrouteCounter{n: h.n, next: h.next.WithAttrs(as)}
}

// WithGroup implements slog.Handler.
func (h ptMisrouteCounter) WithGroup(name string) slog.Handler {
	return ptMisrouteCounter{n: h.n, next: h.next.WithGroup(name)}
}

// publishAV publishes one Opus and one VP8 track on a new publisher PC and
// writes packets (audio every 20ms, video every 10ms) until the client
// closes.
func (c *ptClient) publishAV(ctx context.Context) {
	t := c.t
	t.Helper()
	pc, err := c.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatalf("client pc: %v", err)
	}
	c.mu.Lock()
	c.pubs = append(c.pubs, pc)
	c.mu.Unlock()
	audio, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "mic")
	if err != nil {
		t.Fatalf("audio track: %v", err)
	}
	video, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "cam")
	if err != nil {
		t.Fatalf("video track: %v", err)
	}
	for _, tr := range []webrtc.TrackLocal{audio, video} {
		sender, err := pc.AddTrack(tr)
		if err != nil {
			t.Fatalf("AddTrack: %v", err)
		}
		c.wg.Add(1)
		go func() { // drive the sender's interceptors
			defer c.wg.Done()
			buf := make([]byte, 1500)
			for {
				if _, _, err := sender.Read(buf); err != nil {
					return
				}
			}
		}()
	}
	publishOffer(ctx, t, c.p, pc)
	write := func(tr *webrtc.TrackLocalStaticRTP, every time.Duration, pkt *rtp.Packet, step uint32) {
		defer c.wg.Done()
		peer.WriteEvery(c.stop, every, func() error {
			pkt.SequenceNumber++
			pkt.Timestamp += step
			return tr.WriteRTP(pkt)
		})
	}
	c.wg.Add(2)
	go write(audio, 20*time.Millisecond, &rtp.Packet{
		Header:  rtp.Header{Version: 2, PayloadType: 111, SSRC: 1111},
		Payload: []byte{0xfc, 0xff, 0xfe},
	}, 960)
	go write(video, 10*time.Millisecond, &rtp.Packet{
		Header:  rtp.Header{Version: 2, PayloadType: 96, SSRC: 2222, Marker: true},
		Payload: []byte{0x10, 0x00, 0x9d, 0x01, 0x2a, 1, 2, 3, 4, 5, 6, 7, 8},
	}, 900)
}

// ptPublishAV has a new client on n publish audio and video in room and
// returns the client and its two producers (as the registry describes
// them), audio first.
func ptPublishAV(ctx context.Context, t *testing.T, n *ptNode, room, name string) (*ptClient, []sfu.ProducerInfo) {
	t.Helper()
	c := ptJoin(t, n, room, name)
	c.publishAV(ctx)
	var prods []sfu.ProducerInfo
	ptWait(ctx, t, "local producers of "+name, func() bool {
		prods = prods[:0]
		if r := n.engine.Room(room); r != nil {
			for _, p := range r.Producers() {
				if p.ParticipantID == c.p.ID() {
					prods = append(prods, p)
				}
			}
		}
		return len(prods) == 2
	})
	slices.SortFunc(prods, func(a, b sfu.ProducerInfo) int { return strings.Compare(string(a.Kind), string(b.Kind)) })
	return c, prods
}

// ptPipeAll pipes every producer of prods into room on n, concurrently.
func ptPipeAll(ctx context.Context, t *testing.T, n *ptNode, room string, prods []sfu.ProducerInfo) {
	t.Helper()
	errs := make(chan error, len(prods))
	for _, p := range prods {
		go func() { errs <- n.pipes.PipeIn(ctx, room, p) }()
	}
	for range prods {
		if err := <-errs; err != nil {
			t.Fatalf("%s PipeIn: %v", n.id, err)
		}
	}
}

// ptPackets returns the packets c received so far for each producer.
func ptPackets(c *ptClient, prods []sfu.ProducerInfo) []int64 {
	out := make([]int64, len(prods))
	for i, p := range prods {
		if rt := c.track(p.ID); rt != nil {
			out[i] = rt.packets.Load()
		}
	}
	return out
}

// ptExpectFlowing checks that c keeps receiving every producer of prods:
// after a first sample, each track's packet count must grow by at least
// 20 more (a track stalled by misrouted packets never does). The growth
// is awaited rather than timed, so a loaded machine only slows it down;
// taking more than 5s is reported as a stall.
func ptExpectFlowing(ctx context.Context, t *testing.T, what string, c *ptClient, prods []sfu.ProducerInfo) {
	t.Helper()
	for _, p := range prods {
		ptWaitMedia(ctx, t, c, p)
	}
	first := ptPackets(c, prods)
	start := time.Now()
	ptWait(ctx, t, what+": media flowing", func() bool {
		for i, n := range ptPackets(c, prods) {
			if n-first[i] < 20 {
				return false
			}
		}
		return true
	})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("%s: 20 more packets of every track took %v (first sample %v, now %v)", what, d.Round(time.Millisecond), first, ptPackets(c, prods))
	}
}

// ptExpectLink checks that n has exactly one link with peer, in the given
// role, connected, carrying exactly in (pulled, all active) and out
// (served), and returns its id.
func ptExpectLink(t *testing.T, n *ptNode, peer, role string, in, out []sfu.ProducerInfo) string {
	t.Helper()
	var mine []LinkStatus
	for _, ls := range n.pipes.Status() {
		if ls.PeerNode == peer {
			mine = append(mine, ls)
		}
	}
	if len(mine) != 1 {
		t.Fatalf("%s has %d links with %s, want 1: %+v", n.id, len(mine), peer, mine)
	}
	ls := mine[0]
	if ls.Role != role || ls.State != "connected" || ls.LinkID == "" {
		t.Errorf("%s link with %s: role %s state %s id %q, want %s connected", n.id, peer, ls.Role, ls.State, ls.LinkID, role)
	}
	var gotIn, gotOut, wantIn, wantOut []string
	for _, p := range ls.Producers {
		switch p.Direction {
		case DirectionIn:
			gotIn = append(gotIn, p.ID)
			if p.State != "active" {
				t.Errorf("%s link with %s: pulled %s is %s, want active", n.id, peer, p.ID, p.State)
			}
		case DirectionOut:
			gotOut = append(gotOut, p.ID)
		default:
			t.Errorf("%s link with %s: producer %+v has no direction", n.id, peer, p)
		}
	}
	for _, p := range in {
		wantIn = append(wantIn, p.ID)
	}
	for _, p := range out {
		wantOut = append(wantOut, p.ID)
	}
	for _, l := range [][]string{gotIn, gotOut, wantIn, wantOut} {
		slices.Sort(l)
	}
	if !slices.Equal(gotIn, wantIn) || !slices.Equal(gotOut, wantOut) {
		t.Errorf("%s link with %s carries in %v out %v, want in %v out %v", n.id, peer, gotIn, gotOut, wantIn, wantOut)
	}
	return ls.LinkID
}

// ptWaitSettled waits until n's link with peer is connected and every
// pulled producer on it is active.
func ptWaitSettled(ctx context.Context, t *testing.T, n *ptNode, peer string, pulls int) {
	t.Helper()
	ptWait(ctx, t, fmt.Sprintf("%s's link with %s connected with %d active pulls", n.id, peer, pulls), func() bool {
		ls := ptLink(n, peer, DirectionIn)
		if ls == nil || ls.State != "connected" || len(ls.Producers) != pulls {
			return false
		}
		for _, p := range ls.Producers {
			if p.State != "active" {
				return false
			}
		}
		return true
	})
}

// ptNoSRTPErrors checks that no engine logged SRTP authentication failures
// or ICE requests with a wrong username (packets of one PeerConnection
// delivered to another).
func ptNoSRTPErrors(t *testing.T, nodes ...*ptNode) {
	t.Helper()
	for _, n := range nodes {
		if got := n.misrouted.Load(); got != 0 {
			t.Errorf("%s logged %d SRTP auth failures / wrong-username STUN requests", n.id, got)
		}
	}
}

func TestLinkBidirectionalOneLink(t *testing.T) {
	ptLeakCheck(t)
	ctx := ptContext(t)
	c := newPTCluster(t, nil, "a", "b")
	a, b := c.node("a"), c.node("b")

	pubA, prodsA := ptPublishAV(ctx, t, a, "room", "alice")
	pubB, prodsB := ptPublishAV(ctx, t, b, "room", "bob")
	// Both nodes pull at the same time: the controller's first offer and
	// the answerer's first want request race.
	var wg sync.WaitGroup
	for _, x := range []struct {
		n     *ptNode
		prods []sfu.ProducerInfo
	}{{a, prodsB}, {b, prodsA}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ptPipeAll(ctx, t, x.n, "room", x.prods)
		}()
	}
	wg.Wait()
	ptWaitSettled(ctx, t, a, "b", 2)
	ptWaitSettled(ctx, t, b, "a", 2)
	idA := ptExpectLink(t, a, "b", RoleController, prodsB, prodsA)
	idB := ptExpectLink(t, b, "a", RoleAnswerer, prodsA, prodsB)
	if idA != idB {
		t.Errorf("link id %s on a but %s on b", idA, idB)
	}

	// Media flows both ways, continuously, over the one link: the
	// publishers' own subscriber PCs receive the other node's producers.
	ptExpectFlowing(ctx, t, "alice on a", pubA, prodsB)
	ptExpectFlowing(ctx, t, "bob on b", pubB, prodsA)
	ptNoSRTPErrors(t, a, b)

	// The link is one PeerConnection with one m-line per track: a sends
	// on sendonly m-lines, b on the recvonly ones a offered.
	ptExpectDirections(t, a, "b", map[string]int{"sendonly": 2, "recvonly": 2})

	// b stops pulling: the link stays (a still pulls from b), media a<-b
	// keeps flowing.
	for _, p := range prodsA {
		b.pipes.Unpipe("room", p.ID)
	}
	ptWait(ctx, t, "a stops serving b", func() bool {
		ls := ptLink(a, "b", DirectionOut)
		return ls != nil && len(ls.Producers) == 0
	})
	time.Sleep(3 * 200 * time.Millisecond) // > LinkIdleTimeout of the test nodes
	if ptExpectLink(t, a, "b", RoleController, prodsB, nil) != idA {
		t.Error("the link changed while it still carried a's pulls")
	}
	ptExpectFlowing(ctx, t, "alice on a after b unpiped", pubA, prodsB)

	// a stops too: the link carries nothing and closes on both sides.
	for _, p := range prodsB {
		a.pipes.Unpipe("room", p.ID)
	}
	ptWait(ctx, t, "idle link closed on both sides", func() bool {
		return len(a.pipes.Status()) == 0 && len(b.pipes.Status()) == 0
	})
	for _, n := range []*ptNode{a, b} {
		if f := n.failures(); len(f) != 0 {
			t.Errorf("%s OnLinkFailed calls = %v, want none", n.id, f)
		}
	}
	ptNoSRTPErrors(t, a, b)
}

// ptExpectDirections checks the m-line directions of n's current local
// description on its link with peer.
func ptExpectDirections(t *testing.T, n *ptNode, peer string, want map[string]int) {
	t.Helper()
	l := n.pipes.linkWith(peer)
	if l == nil {
		t.Fatalf("%s has no link with %s", n.id, peer)
	}
	desc := l.pc.CurrentLocalDescription()
	if desc == nil {
		t.Fatalf("%s link with %s has no local description", n.id, peer)
	}
	parsed := &sdp.SessionDescription{}
	if err := parsed.Unmarshal([]byte(desc.SDP)); err != nil {
		t.Fatalf("parsing SDP: %v", err)
	}
	got := map[string]int{}
	for _, m := range parsed.MediaDescriptions {
		for _, d := range []string{"sendonly", "recvonly", "sendrecv", "inactive"} {
			if _, ok := m.Attribute(d); ok {
				got[d]++
			}
		}
	}
	for d, nw := range want {
		if got[d] != nw {
			t.Errorf("%s link with %s: %d %s m-lines, want %d (all: %v)", n.id, peer, got[d], d, nw, got)
		}
	}
	if got["sendrecv"] != 0 {
		t.Errorf("%s link with %s: %d sendrecv m-lines, want none (all: %v)", n.id, peer, got["sendrecv"], got)
	}
}

func TestLinkFullMesh(t *testing.T) {
	ptLeakCheck(t)
	ctx := ptContext(t)
	ids := []string{"a", "b", "c"}
	c := newPTCluster(t, nil, ids...)
	pubs := map[string]*ptClient{}
	prods := map[string][]sfu.ProducerInfo{}
	for _, id := range ids {
		pubs[id], prods[id] = ptPublishAV(ctx, t, c.node(id), "room", "user-"+id)
	}
	// Every node pulls the others' producers, all at once.
	var wg sync.WaitGroup
	for _, id := range ids {
		for _, other := range ids {
			if other != id {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ptPipeAll(ctx, t, c.node(id), "room", prods[other])
				}()
			}
		}
	}
	wg.Wait()
	for _, id := range ids {
		for _, other := range ids {
			if other != id {
				ptWaitSettled(ctx, t, c.node(id), other, 2)
			}
		}
	}
	linkIDs := map[string]bool{}
	for _, id := range ids {
		n := c.node(id)
		if st := n.pipes.Status(); len(st) != 2 {
			t.Errorf("%s has %d links, want 2: %+v", id, len(st), st)
		}
		for _, other := range ids {
			if other == id {
				continue
			}
			role := RoleAnswerer
			if id < other {
				role = RoleController
			}
			linkIDs[ptExpectLink(t, n, other, role, prods[other], prods[id])] = true
		}
	}
	if len(linkIDs) != 3 {
		t.Errorf("%d distinct link ids, want 3 (one per pair, same on both sides): %v", len(linkIDs), linkIDs)
	}
	for _, id := range ids {
		var others []sfu.ProducerInfo
		for _, other := range ids {
			if other != id {
				others = append(others, prods[other]...)
			}
		}
		ptExpectFlowing(ctx, t, "user on "+id, pubs[id], others)
	}
	ptNoSRTPErrors(t, c.node("a"), c.node("b"), c.node("c"))
}

func TestLinkConcurrentChangesBothRoles(t *testing.T) {
	ptLeakCheck(t)
	ctx := ptContext(t)
	c := newPTCluster(t, func(cfg *PipesConfig) { cfg.LinkIdleTimeout = time.Minute }, "a", "b")
	a, b := c.node("a"), c.node("b")
	var prodsA, prodsB []sfu.ProducerInfo
	var subA, subB *ptClient
	for i := range 3 {
		pa, pA := ptPublishAV(ctx, t, a, "room", fmt.Sprintf("a%d", i))
		pb, pB := ptPublishAV(ctx, t, b, "room", fmt.Sprintf("b%d", i))
		prodsA, prodsB = append(prodsA, pA...), append(prodsB, pB...)
		subA, subB = pa, pb
	}

	// Rounds of churn from both sides at once: each node pulls all of the
	// other's producers, then drops and re-pulls half of them, while the
	// other does the same.
	churn := func(n *ptNode, prods []sfu.ProducerInfo) {
		for round := range 3 {
			var wg sync.WaitGroup
			for i, p := range prods {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if round > 0 && i%2 == round%2 {
						n.pipes.Unpipe("room", p.ID)
					}
					if err := n.pipes.PipeIn(ctx, "room", p); err != nil {
						t.Errorf("%s round %d PipeIn %s: %v", n.id, round, p.ID, err)
					}
				}()
			}
			wg.Wait()
		}
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); churn(a, prodsB) }()
	go func() { defer wg.Done(); churn(b, prodsA) }()
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	ptWaitSettled(ctx, t, a, "b", len(prodsB))
	ptWaitSettled(ctx, t, b, "a", len(prodsA))
	ptWait(ctx, t, "served sets settled", func() bool {
		la, lb := ptLink(a, "b", DirectionOut), ptLink(b, "a", DirectionOut)
		return la != nil && lb != nil && len(la.Producers) == len(prodsA) && len(lb.Producers) == len(prodsB)
	})
	idA := ptExpectLink(t, a, "b", RoleController, prodsB, prodsA)
	if idB := ptExpectLink(t, b, "a", RoleAnswerer, prodsA, prodsB); idA != idB {
		t.Errorf("link id %s on a but %s on b", idA, idB)
	}
	ptExpectFlowing(ctx, t, "last publisher on a", subA, prodsB)
	ptExpectFlowing(ctx, t, "last publisher on b", subB, prodsA)
	ptNoSRTPErrors(t, a, b)
	for _, n := range []*ptNode{a, b} {
		if f := n.failures(); len(f) != 0 {
			t.Errorf("%s OnLinkFailed calls = %v, want none", n.id, f)
		}
	}
}

func TestLinkControllerReplacesStaleSide(t *testing.T) {
	ptLeakCheck(t)
	ctx := ptContext(t)
	c := newPTCluster(t, func(cfg *PipesConfig) { cfg.LinkIdleTimeout = time.Minute }, "a", "b")
	a, b := c.node("a"), c.node("b")
	pubA, prodsA := ptPublishAV(ctx, t, a, "room", "alice")
	pubB, prodsB := ptPublishAV(ctx, t, b, "room", "bob")
	ptPipeAll(ctx, t, a, "room", prodsB)
	ptPipeAll(ctx, t, b, "room", prodsA)
	ptWaitSettled(ctx, t, a, "b", 2)
	ptWaitSettled(ctx, t, b, "a", 2)
	oldID := ptExpectLink(t, b, "a", RoleAnswerer, prodsA, prodsB)

	// The controller forgets the link without telling b (as after a
	// restart) and pulls again: its first offer on a new link makes b drop
	// its stale side (b's pulls through it end: their tracks end when a
	// closes its PC, or the replacement fails them); b pulls again as the
	// orchestrator would, over the new link.
	a.pipes.DropNode("b")
	ptPipeAll(ctx, t, a, "room", prodsB)
	ptWait(ctx, t, "b's stale side replaced, its pulls gone", func() bool {
		ls := ptLink(b, "a", "")
		return ls != nil && ls.LinkID != oldID && len(b.pipes.Piped("room")) == 0
	})
	ptPipeAll(ctx, t, b, "room", prodsA)
	ptWaitSettled(ctx, t, a, "b", 2)
	ptWaitSettled(ctx, t, b, "a", 2)
	newID := ptExpectLink(t, a, "b", RoleController, prodsB, prodsA)
	if got := ptExpectLink(t, b, "a", RoleAnswerer, prodsA, prodsB); got != newID || newID == oldID {
		t.Errorf("link ids: a %s, b %s, old %s; want a new id shared by both", newID, got, oldID)
	}
	ptExpectFlowing(ctx, t, "alice", pubA, prodsB)
	ptExpectFlowing(ctx, t, "bob", pubB, prodsA)
}

func TestLinkAnswererReusesOfferedTransceivers(t *testing.T) {
	ptLeakCheck(t)
	api, err := sfu.NewAPI(webrtc.SettingEngine{})
	if err != nil {
		t.Fatal(err)
	}
	newPC := func() *webrtc.PeerConnection {
		pc, err := api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pc.Close() })
		return pc
	}
	ctrl, ans := &link{pc: newPC()}, &link{pc: newPC()}
	ctrl.role, ans.role = newController(ctrl), newAnswerer(ans)
	track := func(id string) *webrtc.TrackLocalStaticRTP {
		tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, id, "s")
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	// directions returns the directions of the m-lines of desc by mid.
	directions := func(desc *webrtc.SessionDescription) map[string]string {
		parsed := &sdp.SessionDescription{}
		if err := parsed.Unmarshal([]byte(desc.SDP)); err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, m := range parsed.MediaDescriptions {
			mid, _ := m.Attribute("mid")
			for _, d := range []string{"sendonly", "recvonly", "sendrecv", "inactive"} {
				if _, ok := m.Attribute(d); ok {
					out[mid] = d
				}
			}
		}
		return out
	}
	// round: the controller serves its tracks (sendonly transceivers) and
	// adds one recvonly transceiver per fresh pull, offers; the answerer
	// removes then adds its tracks with AddTrack and answers.
	round := func(ctrlTracks []string, fresh int, ansRemove []*webrtc.RTPSender, ansAdd []string) (map[string]string, map[string]*webrtc.RTPSender) {
		t.Helper()
		for _, id := range ctrlTracks { // as Producer.NewSendonlyConsumer
			if _, err := ctrl.pc.AddTransceiverFromTrack(track(id), webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
				t.Fatal(err)
			}
		}
		for range fresh {
			if err := ctrl.role.(*controller).addRecvSlots([]sfu.Kind{sfu.KindVideo}); err != nil {
				t.Fatal(err)
			}
		}
		offer, err := ctrl.pc.CreateOffer(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := ctrl.pc.SetLocalDescription(offer); err != nil {
			t.Fatal(err)
		}
		if err := ans.pc.SetRemoteDescription(offer); err != nil {
			t.Fatal(err)
		}
		for _, s := range ansRemove {
			if err := ans.pc.RemoveTrack(s); err != nil {
				t.Fatal(err)
			}
		}
		senders := map[string]*webrtc.RTPSender{}
		for _, id := range ansAdd {
			s, err := ans.pc.AddTrack(track(id))
			if err != nil {
				t.Fatal(err)
			}
			if midOf(ans.pc, s) == "" {
				t.Fatalf("answerer track %s got a transceiver outside the offer", id)
			}
			senders[id] = s
		}
		answer, err := ans.pc.CreateAnswer(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := ans.pc.SetLocalDescription(answer); err != nil {
			t.Fatal(err)
		}
		if err := ctrl.pc.SetRemoteDescription(answer); err != nil {
			t.Fatal(err)
		}
		offered, answered := directions(&offer), directions(&answer)
		if len(offered) != len(answered) {
			t.Fatalf("offer has %d m-lines, answer %d", len(offered), len(answered))
		}
		for id, s := range senders {
			mid := midOf(ans.pc, s)
			if offered[mid] != "recvonly" || answered[mid] != "sendonly" {
				t.Errorf("answerer track %s on mid %s: offered %s, answered %s; want recvonly/sendonly", id, mid, offered[mid], answered[mid])
			}
		}
		return offered, senders
	}

	// Round 1: the controller sends X and pulls one track; the answerer
	// sends Y on the offered recvonly m-line.
	offered, senders := round([]string{"X"}, 1, nil, []string{"Y"})
	if want := map[string]string{"0": "sendonly", "1": "recvonly"}; !maps.Equal(offered, want) {
		t.Errorf("round 1 offer directions %v, want %v", offered, want)
	}
	// Round 2: the answerer replaces Y by Z (a new pipe instance: the
	// controller offers a fresh recvonly m-line for it).
	_, senders2 := round(nil, 1, []*webrtc.RTPSender{senders["Y"]}, []string{"Z"})
	// Round 3: Y's m-line is free again and taken by W without a fresh
	// m-line; the controller adds a second track of its own.
	offered, _ = round([]string{"V"}, 0, nil, []string{"W"})
	if len(offered) != 4 {
		t.Errorf("round 3 offer has %d m-lines, want 4 (X, Y/W, Z, V): %v", len(offered), offered)
	}
	_ = senders2
}
