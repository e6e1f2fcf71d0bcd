package sfu

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

func TestREDPrimary(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
		want    []byte
		err     bool
	}{
		{"primary only", []byte{111, 1, 2, 3}, []byte{1, 2, 3}, false},
		{"one redundant block of 2", []byte{0x80 | 111, 0x03, 0xc0, 0x02, 111, 9, 9, 1, 2, 3}, []byte{1, 2, 3}, false},
		{"two redundant blocks", []byte{0x80 | 111, 0, 0, 1, 0x80 | 111, 0, 0, 2, 111, 7, 8, 8, 4, 5}, []byte{4, 5}, false},
		{"empty primary", []byte{0x80 | 111, 0, 0, 1, 111, 7}, []byte{}, false},
		{"empty payload", nil, nil, true},
		{"cut in a block header", []byte{0x80 | 111, 0, 0}, nil, true},
		{"no last header", []byte{0x80 | 111, 0, 0, 0}, nil, true},
		{"redundant block longer than the payload", []byte{0x80 | 111, 0, 0x03, 0xff, 111, 1, 2}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := redPrimary(tt.payload)
			if (err != nil) != tt.err {
				t.Fatalf("redPrimary error = %v, want error %v", err, tt.err)
			}
			if err != nil && !errors.Is(err, errBadRED) {
				t.Fatalf("error %v is not errBadRED", err)
			}
			if !tt.err && !bytes.Equal(got, tt.want) {
				t.Fatalf("redPrimary = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestREDPrimaryDoesNotAllocate(t *testing.T) {
	payload := []byte{0x80 | 111, 0, 0, 2, 111, 7, 8, 4, 5}
	if n := testing.AllocsPerRun(100, func() { _, _ = redPrimary(payload) }); n != 0 {
		t.Fatalf("redPrimary allocates %v times", n)
	}
}

// opusOnlyAPI is a client API without RED (like a browser that does not
// support it).
func opusOnlyAPI(t *testing.T) *webrtc.API {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterCodec(opusCodec(), webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatalf("register opus: %v", err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		t.Fatalf("interceptors: %v", err)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir),
		webrtc.WithSettingEngine(clientSettings(nil)))
}

// testREDPayload is a RED packet's payload: one redundant block (the
// previous frame, 3 bytes), then the primary block (5 bytes).
var (
	testREDPrimary = []byte{0xf8, 1, 2, 3, 4}
	testREDPayload = append([]byte{0x80 | 111, 0x03, 0xc0, 0x03, 111, 0xf8, 9, 9}, testREDPrimary...)
)

// publishRED publishes an audio track whose packets are RED
// (testREDPayload every 20 ms) and returns the engine's answer.
func (c *client) publishRED(ctx context.Context) webrtc.SessionDescription {
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SSRC: 4321}, Payload: testREDPayload}
	c.publishTrack(ctx, redCodec().RTPCodecCapability, "audio", "mic", 20*time.Millisecond, pkt, 960)
	c.mu.Lock()
	defer c.mu.Unlock()
	return *c.pub.RemoteDescription()
}

// TestREDForwarding: a publisher offering RED is answered with RED first
// (unless Config.NoAudioRED) and its producer is RED; a subscriber that
// negotiates RED gets the packets as they came, one that does not gets
// the primary blocks as Opus.
func TestREDForwarding(t *testing.T) {
	tests := []struct {
		name    string
		noRED   bool
		wantRED bool
	}{
		{"RED preferred", false, true},
		{"NoAudioRED: Opus preferred", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			e := newTestEngine(t, func(c *Config) { c.NoAudioRED = tt.noRED })
			pub := joinClient(t, e, "red", "alice")
			withRED := joinClient(t, e, "red", "bob")
			opusOnly := joinClientAPI(t, e, "red", "carol", opusOnlyAPI(t))
			answer := pub.publishRED(ctx)
			if first := audioCodecs(answer.SDP); len(first) == 0 || (first[0] == "63") != tt.wantRED {
				t.Fatalf("answer's audio payload types %v; want RED (63) first: %v", first, tt.wantRED)
			}
			if tt.noRED {
				return // the client's RED track does not bind to Opus: nothing to forward
			}
			prods := waitProducers(ctx, t, e.Room("red"), 1)
			if !isRED(prods[0].Codec.MimeType) {
				t.Fatalf("producer codec %q, want RED", prods[0].Codec.MimeType)
			}
			for _, sub := range []struct {
				c    *client
				mime string
				want []byte
			}{{withRED, mimeTypeRED, testREDPayload}, {opusOnly, webrtc.MimeTypeOpus, testREDPrimary}} {
				rt := waitMedia(ctx, t, sub.c, prods[0])
				if !strings.EqualFold(rt.mime, sub.mime) {
					t.Errorf("%s receives %s, want %s", sub.c.p.Info().Name, rt.mime, sub.mime)
				}
				if got := *rt.last.Load(); !bytes.Equal(got, sub.want) {
					t.Errorf("%s receives payload %v, want %v", sub.c.p.Info().Name, got, sub.want)
				}
			}
		})
	}
}

// audioCodecs returns the payload types of sdp's first audio m-line.
func audioCodecs(sdp string) []string {
	for _, line := range strings.Split(sdp, "\r\n") {
		if f := strings.Fields(line); len(f) > 3 && f[0] == "m=audio" {
			return f[3:]
		}
	}
	return nil
}
