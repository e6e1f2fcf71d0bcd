package sfu

import (
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

func TestPublishInvalidSDP(t *testing.T) {
	e := newTestEngine(t, nil)
	c := joinClient(t, e, "r", "alice")
	valid := clientOffer(t)
	tests := []struct {
		name string
		sd   webrtc.SessionDescription
	}{
		{"garbage", webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: "hello world"}},
		{"empty", webrtc.SessionDescription{Type: webrtc.SDPTypeOffer}},
		{"wrong type", webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: valid.SDP}},
		{"no type", webrtc.SessionDescription{SDP: valid.SDP}},
		{"no fingerprint", webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: dropLines(valid.SDP, "a=fingerprint")}},
		{"no ice credentials", webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: dropLines(valid.SDP, "a=ice-")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := c.p.Publish(tt.sd); !errors.Is(err, ErrInvalidSDP) {
				t.Errorf("Publish = %v, want ErrInvalidSDP", err)
			}
		})
	}
	// The participant is still usable after bad input.
	if _, err := c.p.Publish(clientOffer(t)); err != nil {
		t.Errorf("Publish(valid) after bad input = %v", err)
	}
}

// clientOffer returns a valid offer with one video track.
func clientOffer(t *testing.T) webrtc.SessionDescription {
	t.Helper()
	pc, err := clientAPI(t, nil).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatalf("pc: %v", err)
	}
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo,
		webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatalf("transceiver: %v", err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatalf("offer: %v", err)
	}
	return offer
}

func dropLines(sdp, prefix string) string {
	var out []string
	for _, l := range strings.Split(sdp, "\r\n") {
		if !strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\r\n")
}

func TestSubscriberAnswerErrors(t *testing.T) {
	e := newTestEngine(t, nil)
	c := joinClient(t, e, "r", "alice")
	offer := clientOffer(t)
	tests := []struct {
		name string
		sd   webrtc.SessionDescription
		want error
	}{
		{"garbage", webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: "v=0\r\nbroken"}, ErrInvalidSDP},
		{"offer type", offer, ErrInvalidSDP},
		{"no outstanding offer", webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: offer.SDP}, ErrWrongState},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := c.p.SetSubscriberAnswer(tt.sd); !errors.Is(err, tt.want) {
				t.Errorf("SetSubscriberAnswer = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestAddICECandidateErrors(t *testing.T) {
	e := newTestEngine(t, nil)
	c := joinClient(t, e, "r", "alice")
	cand := webrtc.ICECandidateInit{Candidate: "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host"}
	tests := []struct {
		name   string
		target Target
		cand   webrtc.ICECandidateInit
		want   error
	}{
		{"publisher before publish", TargetPublisher, cand, ErrWrongState},
		{"subscriber before offer", TargetSubscriber, cand, ErrWrongState},
		{"unknown target", Target("x"), cand, ErrInvalidArgument},
		{"end of candidates", TargetPublisher, webrtc.ICECandidateInit{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := c.p.AddICECandidate(tt.target, tt.cand); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Errorf("AddICECandidate = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := c.p.Publish(clientOffer(t)); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if err := c.p.AddICECandidate(TargetPublisher, cand); err != nil {
		t.Errorf("AddICECandidate after publish = %v", err)
	}
	if err := c.p.AddICECandidate(TargetPublisher, webrtc.ICECandidateInit{Candidate: "nonsense"}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("AddICECandidate(nonsense) = %v, want ErrInvalidArgument", err)
	}
	c.p.Close()
	if err := c.p.AddICECandidate(TargetPublisher, cand); !errors.Is(err, ErrParticipantClosed) {
		t.Errorf("AddICECandidate after Close = %v, want ErrParticipantClosed", err)
	}
}

func TestJoinLimits(t *testing.T) {
	e := newTestEngine(t, func(c *Config) {
		c.MaxParticipantsPerRoom = 2
		c.MaxRooms = 1
	})
	join := func(room string) (*Participant, error) {
		p, err := e.Join(room, JoinParams{Name: "x", Events: newRecorder()})
		if err == nil {
			t.Cleanup(p.Close)
		}
		return p, err
	}
	a, err := join("r")
	if err != nil {
		t.Fatalf("join 1: %v", err)
	}
	if _, err := join("r"); err != nil {
		t.Fatalf("join 2: %v", err)
	}
	if _, err := join("r"); !errors.Is(err, ErrRoomFull) {
		t.Errorf("join 3 = %v, want ErrRoomFull", err)
	}
	if _, err := join("other"); !errors.Is(err, ErrTooManyRooms) {
		t.Errorf("join other room = %v, want ErrTooManyRooms", err)
	}
	a.Close()
	if _, err := join("r"); err != nil {
		t.Errorf("join after a leave = %v", err)
	}
	if _, err := e.Join("r", JoinParams{Name: "x"}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("join without events = %v, want ErrInvalidArgument", err)
	}
	if _, err := e.Join("", JoinParams{Name: "x", Events: newRecorder()}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("join without room = %v, want ErrInvalidArgument", err)
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr bool
	}{
		{"defaults", func(*Config) {}, false},
		{"ephemeral port", func(c *Config) { c.UDPAddr = "127.0.0.1:0" }, false},
		{"ipv6", func(c *Config) { c.UDPAddr = "[::1]:5000" }, false},
		{"public ips", func(c *Config) { c.PublicIPs = []string{"203.0.113.7"} }, false},
		{"bad udp addr", func(c *Config) { c.UDPAddr = "nope" }, true},
		{"hostname udp addr", func(c *Config) { c.UDPAddr = "localhost:5000" }, true},
		{"bad port", func(c *Config) { c.UDPAddr = "127.0.0.1:99999" }, true},
		{"bad public ip", func(c *Config) { c.PublicIPs = []string{"example.com"} }, true},
		{"negative keyframe interval", func(c *Config) { c.KeyframeInterval = -time.Second }, true},
		{"negative max rooms", func(c *Config) { c.MaxRooms = -1 }, true},
		{"negative max participants", func(c *Config) { c.MaxParticipantsPerRoom = -1 }, true},
		{"write batching off", func(c *Config) { c.WriteBatch = 1 }, false},
		{"largest write batch", func(c *Config) { c.WriteBatch = MaxWriteBatch }, false},
		{"write batch too large", func(c *Config) { c.WriteBatch = MaxWriteBatch + 1 }, true},
		{"negative write batch", func(c *Config) { c.WriteBatch = -1 }, true},
		{"fan-out on the writer alone", func(c *Config) { c.FanoutWorkers = 1 }, false},
		{"most fan-out workers", func(c *Config) { c.FanoutWorkers = MaxFanoutWorkers }, false},
		{"too many fan-out workers", func(c *Config) { c.FanoutWorkers = MaxFanoutWorkers + 1 }, true},
		{"negative fan-out workers", func(c *Config) { c.FanoutWorkers = -1 }, true},
		{"shards of one", func(c *Config) { c.FanoutShardMin = 1 }, false},
		{"negative shard minimum", func(c *Config) { c.FanoutShardMin = -1 }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Config
			tt.mutate(&c)
			c.SetDefaults()
			if err := c.Validate(); (err != nil) != tt.wantErr {
				t.Errorf("Validate = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
	var c Config
	c.SetDefaults()
	if c.NodeID != DefaultNodeID || c.UDPAddr != DefaultUDPAddr || c.KeyframeInterval != DefaultKeyframeInterval ||
		c.MaxParticipantsPerRoom != DefaultMaxParticipantsPerRoom || c.MaxRooms != DefaultMaxRooms || c.Logger == nil ||
		c.WriteBatch != DefaultWriteBatch || c.FanoutWorkers != runtime.GOMAXPROCS(0) || c.FanoutShardMin != DefaultFanoutShardMin {
		t.Errorf("defaults = %+v", c)
	}
	if _, err := New(Config{UDPAddr: "nope"}); err == nil {
		t.Error("New with invalid config succeeded")
	}
}

func TestEngineAccessors(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.PublicIPs = []string{"203.0.113.7"} })
	if e.NodeID() != "node-a" {
		t.Errorf("NodeID = %q", e.NodeID())
	}
	if e.UDPAddr() == nil || strings.HasSuffix(e.UDPAddr().String(), ":0") {
		t.Errorf("UDPAddr = %v, want a bound port", e.UDPAddr())
	}
	pc, err := e.NewPeerConnection()
	if err != nil {
		t.Fatalf("NewPeerConnection: %v", err)
	}
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatalf("transceiver: %v", err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatalf("CreateOffer: %v", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatalf("SetLocalDescription: %v", err)
	}
	<-gathered
	sdp := pc.LocalDescription().SDP
	for _, want := range []string{"VP8/90000", "H264/90000", "profile-level-id=42e01f", "packetization-mode=1",
		"nack pli", "ccm fir", "goog-remb", "transport-cc", "203.0.113.7"} {
		if !strings.Contains(sdp, want) {
			t.Errorf("offer lacks %q:\n%s", want, sdp)
		}
	}
}

func TestCodecConversion(t *testing.T) {
	tests := []struct {
		name  string
		codec Codec
		kind  Kind
		fb    int
	}{
		{"vp8", Codec{MimeType: "video/VP8", ClockRate: 90000, PayloadType: 96}, KindVideo, 5},
		{"opus", Codec{MimeType: "audio/opus", ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10", PayloadType: 111}, KindAudio, 1},
		{"unknown", Codec{MimeType: "text/plain"}, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			capab := tt.codec.Capability()
			if len(capab.RTCPFeedback) != tt.fb || KindOf(tt.codec.MimeType) != tt.kind {
				t.Errorf("capability = %+v, kind %q", capab, KindOf(tt.codec.MimeType))
			}
			back := CodecFrom(webrtc.RTPCodecParameters{RTPCodecCapability: capab, PayloadType: webrtc.PayloadType(tt.codec.PayloadType)})
			if back != tt.codec {
				t.Errorf("round trip = %+v, want %+v", back, tt.codec)
			}
		})
	}
}
