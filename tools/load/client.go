package load

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/confab/confab/internal/peer"
)

// Timeouts of the client's signaling steps.
const (
	// JoinTimeout bounds dialing the WebSocket and getting "joined".
	JoinTimeout = 10 * time.Second
	// NegotiationTimeout bounds one offer/answer exchange, ICE gathering
	// included.
	NegotiationTimeout = 10 * time.Second
	// leaveTimeout bounds the polite goodbye: sending "leave" and waiting for
	// the server to close the socket.
	leaveTimeout = 3 * time.Second
	// maxClientErrors bounds the error messages a client keeps.
	maxClientErrors = 8
)

// Env is what the clients of one run share: the clock, the send-time
// registry, the measurement window and the two pion APIs (publishers use
// pion's default interceptors like a browser, so they answer NACKs and see
// PLIs; subscribers announce the RTCP feedback a browser announces, so the
// node serves them exactly as it serves browsers (NACK cache, PLI/FIR
// forwarding, transport-cc), and send receiver reports like a browser, but
// run no NACK generator or congestion control: cheaper, and loss is
// measured without NACK repair).
type Env struct {
	Clock    *Clock
	Registry *Registry
	Window   *Window
	Log      *slog.Logger

	pubAPI *webrtc.API
	subAPI *webrtc.API
}

// NewEnv builds an Env. With loopbackOnly the peer connections gather only
// loopback candidates (the node is on this machine); otherwise every UDP4
// host candidate. A nil log discards.
func NewEnv(loopbackOnly bool, log *slog.Logger) (*Env, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	if loopbackOnly {
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	}

	pubME, err := mediaEngine()
	if err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(pubME, ir); err != nil {
		return nil, fmt.Errorf("load: register interceptors: %w", err)
	}
	subME, err := mediaEngine()
	if err != nil {
		return nil, err
	}
	subIR := &interceptor.Registry{}
	if err := webrtc.ConfigureRTCPReports(subIR); err != nil {
		return nil, fmt.Errorf("load: register receiver reports: %w", err)
	}
	return &Env{
		Clock:    NewClock(),
		Registry: NewRegistry(),
		Window:   &Window{},
		Log:      log,
		pubAPI: webrtc.NewAPI(webrtc.WithMediaEngine(pubME), webrtc.WithInterceptorRegistry(ir),
			webrtc.WithSettingEngine(se)),
		subAPI: webrtc.NewAPI(webrtc.WithMediaEngine(subME), webrtc.WithSettingEngine(se),
			webrtc.WithInterceptorRegistry(subIR)),
	}, nil
}

// mediaEngine registers Opus (PT 111) and VP8 (PT 96), the payload types
// and parameters confab offers, with the RTCP feedback a browser announces
// (nack, pli, fir, transport-cc).
func mediaEngine() (*webrtc.MediaEngine, error) {
	videoFB := []webrtc.RTCPFeedback{
		{Type: webrtc.TypeRTCPFBCCM, Parameter: "fir"},
		{Type: webrtc.TypeRTCPFBNACK},
		{Type: webrtc.TypeRTCPFBNACK, Parameter: "pli"},
		{Type: webrtc.TypeRTCPFBTransportCC},
	}
	audioFB := []webrtc.RTCPFeedback{{Type: webrtc.TypeRTCPFBTransportCC}}
	m := &webrtc.MediaEngine{}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: opusCapability(audioFB), PayloadType: 111,
	}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, fmt.Errorf("load: register opus: %w", err)
	}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: vp8Capability(videoFB), PayloadType: 96,
	}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, fmt.Errorf("load: register vp8: %w", err)
	}
	return m, nil
}

func opusCapability(fb []webrtc.RTCPFeedback) webrtc.RTPCodecCapability {
	return webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
		SDPFmtpLine: "minptime=10;useinbandfec=1", RTCPFeedback: fb}
}

func vp8Capability(fb []webrtc.RTCPFeedback) webrtc.RTPCodecCapability {
	return webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: fb}
}

// ClientConfig says where a simulated participant joins.
type ClientConfig struct {
	// URL is the node's base URL, e.g. http://127.0.0.1:8080.
	URL string
	// Room is the room name.
	Room string
	// Name is the display name.
	Name string
}

// Client is one simulated participant: a signaling WebSocket speaking
// protocol v1, a subscriber peer connection answering the server's offers
// and reading every track it is sent (one goroutine per track), and, after
// Publish, a publisher peer connection sending the clip.
//
// Its goroutines (the WebSocket reader, one per received track, and the
// publisher's pacer and RTCP readers) are owned by the Client and waited
// for by Close. Per-track statistics may be read only after Close.
type Client struct {
	env  *Env
	cfg  ClientConfig
	ws   *wsConn
	id   string
	node string
	log  *slog.Logger

	dialAt    int64        // Clock.Now when Join started
	joinedAt  int64        // Clock.Now when "joined" arrived
	publishAt atomic.Int64 // Clock.Now when "publish" was sent (0: not published)

	ctx        context.Context // cancelled by Close
	cancel     context.CancelFunc
	readerDone chan struct{}
	answerc    chan wireSDP // publish-answers for Publish
	errorc     chan message // error messages for Publish
	wg         sync.WaitGroup
	closeOnce  sync.Once

	firstMedia atomic.Int64  // Clock.Now of the first media packet received (0: none yet)
	received   atomic.Uint64 // media packets received, warm-up included
	leaving    atomic.Bool   // Close started: connection errors are expected

	sub *peer.Answerer // the subscriber peer connection (answers the node's offers)

	mu        sync.Mutex // guards the fields below
	closed    bool
	pub       *publisher
	tracks    []*trackReader
	remote    []webrtc.ICECandidateInit // server candidates before the subscriber's remote description
	errs      []string
	errCount  int
	readerErr error // why the WebSocket reader stopped, unless Close stopped it
}

// Join dials the node's signaling WebSocket and joins cfg.Room as cfg.Name.
// It returns once "joined" arrived; from then on the Client answers
// subscriber offers and receives media in the background until Close.
func Join(ctx context.Context, env *Env, cfg ClientConfig) (*Client, error) {
	c := &Client{
		env:        env,
		cfg:        cfg,
		dialAt:     env.Clock.Now(),
		readerDone: make(chan struct{}),
		answerc:    make(chan wireSDP, 1),
		errorc:     make(chan message, maxClientErrors),
	}
	c.sub = peer.NewAnswerer(env.subAPI, c.onTrack)
	jctx, cancel := context.WithTimeout(ctx, JoinTimeout)
	defer cancel()
	ws, err := dialWS(jctx, cfg.URL, cfg.Room)
	if err != nil {
		return nil, err
	}
	c.ws = ws
	if err := ws.send(jctx, message{Type: msgJoin, Name: cfg.Name}); err != nil {
		ws.closeNow()
		return nil, err
	}
	for {
		m, err := ws.read(jctx)
		if err != nil {
			ws.closeNow()
			return nil, fmt.Errorf("load: join %s as %s: %w", cfg.Room, cfg.Name, err)
		}
		if m.Type == msgError {
			ws.closeNow()
			return nil, fmt.Errorf("load: join %s as %s: server error %s: %s", cfg.Room, cfg.Name, m.Code, m.Message)
		}
		if m.Type == msgJoined {
			c.id, c.node = m.ParticipantID, m.NodeID
			break
		}
	}
	if c.id == "" {
		ws.closeNow()
		return nil, fmt.Errorf("load: join %s as %s: joined without participant id", cfg.Room, cfg.Name)
	}
	c.joinedAt = env.Clock.Now()
	c.log = env.Log.With("client", cfg.Name, "participant", c.id)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	go c.readLoop()
	return c, nil
}

// ID returns the participant id the node assigned.
func (c *Client) ID() string { return c.id }

// Node returns the id of the node the client joined.
func (c *Client) Node() string { return c.node }

// Received returns how many media packets the client received so far
// (warm-up included).
func (c *Client) Received() uint64 { return c.received.Load() }

// JoinTime returns the time from dialing the WebSocket to the first media
// packet received; ok is false while no media has arrived.
func (c *Client) JoinTime() (d time.Duration, ok bool) {
	first := c.firstMedia.Load()
	if first == 0 {
		return 0, false
	}
	return time.Duration(first - c.dialAt), true
}

// Track describes a track the client receives.
type Track struct {
	// ID is the track id: the producer id of the protocol.
	ID string
	// Publisher is the stream id: the publishing participant's id.
	Publisher string
	// Kind is "audio" or "video".
	Kind string
}

// Tracks lists the tracks received so far, in arrival order.
func (c *Client) Tracks() []Track {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Track, len(c.tracks))
	for i, t := range c.tracks {
		out[i] = Track{ID: t.id, Publisher: t.publisher, Kind: t.kind.String()}
	}
	return out
}

// Err returns why the client's signaling connection ended, if it ended
// before Close (the server dropped it, or it sent an undecodable message).
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readerErr
}

// Errors returns the server's error messages and other client failures seen
// so far (at most a few; count is the total).
func (c *Client) Errors() (msgs []string, count int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.errs...), c.errCount
}

// record keeps a failure for the report.
func (c *Client) record(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	c.mu.Lock()
	c.errCount++
	if len(c.errs) < maxClientErrors {
		c.errs = append(c.errs, msg)
	}
	c.mu.Unlock()
	c.log.Debug("client error", "err", msg)
}

// Close leaves the room politely ("leave", then waits briefly for the server
// to close the socket), closes the peer connections and waits for every
// goroutine of the client. Safe to call more than once and concurrently.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() { err = c.close() })
	return err
}

func (c *Client) close() error {
	c.leaving.Store(true)
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()

	var err error
	select {
	case <-c.readerDone: // the server already dropped us
	default:
		lctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
		if err = c.ws.send(lctx, message{Type: msgLeave}); err == nil {
			select {
			case <-c.readerDone:
			case <-lctx.Done():
				err = fmt.Errorf("load: leave %s: the server did not close the socket within %v", c.id, leaveTimeout)
			}
		}
		cancel()
	}
	c.cancel()
	c.ws.closeNow()
	<-c.readerDone

	// No goroutine creates peer connections any more (the reader is gone and
	// closed is set), so pub is final.
	c.mu.Lock()
	pub := c.pub
	c.mu.Unlock()
	if pub != nil {
		err = errors.Join(err, pub.close())
		c.env.Registry.Unregister(c.id)
	}
	if cerr := c.sub.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("load: close subscriber pc of %s: %w", c.id, cerr))
	}
	c.wg.Wait()
	return err
}

// readLoop handles server messages until the socket closes or Close.
func (c *Client) readLoop() {
	defer close(c.readerDone)
	for {
		m, err := c.ws.read(c.ctx)
		if err != nil {
			if !c.leaving.Load() && !normalClosure(err) {
				c.mu.Lock()
				c.readerErr = fmt.Errorf("load: %s: signaling connection lost: %w", c.cfg.Name, err)
				c.mu.Unlock()
				c.record("signaling connection lost: %v", err)
			}
			return
		}
		switch m.Type {
		case msgSubscriberOffer:
			if err := c.onSubscriberOffer(m); err != nil && !c.leaving.Load() {
				c.record("%v", err)
			}
		case msgPublishAnswer:
			if m.SDP == nil {
				c.record("publish-answer without sdp")
				continue
			}
			select {
			case c.answerc <- *m.SDP:
			default:
				c.record("unexpected publish-answer")
			}
		case msgCandidate:
			c.onCandidate(m)
		case msgError:
			c.record("server error %s: %s", m.Code, m.Message)
			select {
			case c.errorc <- m:
			default:
			}
		case msgMove:
			c.record("server asked to move (%s): %s", m.Reason, m.Message)
		}
	}
}

// onCandidate adds a server candidate to the peer connection it is for.
// (confab puts its candidates into its SDPs, but the protocol allows
// trickling.)
func (c *Client) onCandidate(m message) {
	if m.Candidate == nil || m.Candidate.Candidate == "" {
		return
	}
	c.mu.Lock()
	var pc *webrtc.PeerConnection
	switch m.Target {
	case targetPublisher:
		if c.pub != nil {
			pc = c.pub.pc
		}
	case targetSubscriber:
		pc = c.sub.PC()
		if pc == nil || pc.RemoteDescription() == nil {
			c.remote = append(c.remote, *m.Candidate)
			c.mu.Unlock()
			return
		}
	}
	c.mu.Unlock()
	if pc == nil {
		return
	}
	if err := pc.AddICECandidate(*m.Candidate); err != nil {
		c.record("add %s candidate: %v", m.Target, err)
	}
}

// onSubscriberOffer answers a subscriber-offer, creating the subscriber
// peer connection on the first one. Local candidates go into the answer
// (gathering is awaited, bounded by NegotiationTimeout), so nothing is
// trickled.
func (c *Client) onSubscriberOffer(m message) error {
	if m.SDP == nil || m.SDP.Type != "offer" {
		return errors.New("subscriber-offer without an offer")
	}
	ctx, cancel := context.WithTimeout(c.ctx, NegotiationTimeout)
	defer cancel()
	answer, err := c.sub.Answer(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.SDP.SDP}, ctx.Done())
	c.addQueuedCandidates()
	switch {
	case errors.Is(err, peer.ErrStopped) && c.ctx.Err() == nil:
		return fmt.Errorf("subscriber answer: ICE gathering took more than %v", NegotiationTimeout)
	case err != nil:
		return fmt.Errorf("subscriber answer: %w", err)
	}
	return c.ws.send(c.ctx, message{Type: msgSubscriberAnswer, SDP: &wireSDP{Type: "answer", SDP: answer.SDP}})
}

// addQueuedCandidates adds the server candidates that came before the
// subscriber peer connection had a remote description, once it has one.
func (c *Client) addQueuedCandidates() {
	pc := c.sub.PC()
	if pc == nil || pc.RemoteDescription() == nil {
		return
	}
	c.mu.Lock()
	queued := c.remote
	c.remote = nil
	c.mu.Unlock()
	for _, cand := range queued {
		if err := pc.AddICECandidate(cand); err != nil {
			c.record("add subscriber candidate: %v", err)
		}
	}
}

// describe sets desc as pc's local description and waits (bounded) for ICE
// gathering, returning the SDP with every local candidate.
func (c *Client) describe(pc *webrtc.PeerConnection, desc webrtc.SessionDescription) (string, error) {
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(desc); err != nil {
		return "", err
	}
	t := time.NewTimer(NegotiationTimeout)
	defer t.Stop()
	select {
	case <-gathered:
	case <-c.ctx.Done():
		return "", c.ctx.Err()
	case <-t.C:
		return "", fmt.Errorf("ICE gathering took more than %v", NegotiationTimeout)
	}
	return pc.LocalDescription().SDP, nil
}

// onTrack starts a reader for a track of the subscriber PC (pion calls it
// when the track's first packet arrives).
func (c *Client) onTrack(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	t := &trackReader{
		id:        tr.ID(),
		kind:      tr.Kind(),
		publisher: tr.StreamID(),
		times:     c.env.Registry.Lookup(tr.StreamID(), tr.Kind()),
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.tracks = append(c.tracks, t)
	c.wg.Add(1)
	c.mu.Unlock()
	go c.readTrack(t, tr)
}
