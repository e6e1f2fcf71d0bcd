package clip

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// smallDir is the committed test clip (see README.md).
const smallDir = "testdata/small"

// checkClip checks the shape of a loaded clip against the options it was made
// with (defaults applied).
func checkClip(t *testing.T, c *Clip, o Options) {
	t.Helper()
	if c.Width != o.Width || c.Height != o.Height {
		t.Errorf("size %dx%d, want %dx%d", c.Width, c.Height, o.Width, o.Height)
	}
	if c.FPS != float64(o.FPS) {
		t.Errorf("FPS %v, want %d", c.FPS, o.FPS)
	}
	if want := o.FPS * o.Seconds; len(c.Video) != want {
		t.Errorf("%d video frames, want %d", len(c.Video), want)
	}
	for i, f := range c.Video {
		if want := i%o.KeyframeInterval == 0; f.Keyframe != want {
			t.Errorf("frame %d: keyframe %v, want %v (a keyframe every %d frames)", i, f.Keyframe, want, o.KeyframeInterval)
		}
	}
	// 50 packets of 20 ms per second, plus one for the encoder's pre-skip.
	if n := len(c.Audio); n < 50*o.Seconds || n > 50*o.Seconds+1 {
		t.Errorf("%d audio packets, want %d or %d", n, 50*o.Seconds, 50*o.Seconds+1)
	}
}

// videoKbps returns the average bitrate of c's video.
func videoKbps(c *Clip) float64 {
	n := 0
	for _, f := range c.Video {
		n += len(f.Data)
	}
	return float64(n) * 8 / (float64(len(c.Video)) / c.FPS) / 1000
}

func TestCommittedSmallClip(t *testing.T) {
	c, err := Load(smallDir)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Width: 320, Height: 180, FPS: 30, Seconds: 3, VideoKbps: 300, KeyframeInterval: 30}
	checkClip(t, c, o)
	if kbps := videoKbps(c); kbps < 0.8*300 || kbps > 1.2*300 {
		t.Errorf("video bitrate %.0f kbps, want within 20%% of 300", kbps)
	}
}

func TestGenerateRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		o    Options
	}{
		{"tiny", Options{Width: 64, Height: 48, FPS: 10, Seconds: 1, VideoKbps: 100, KeyframeInterval: 4, AudioKbps: 16}},
		{"odd keyframe interval", Options{Width: 160, Height: 90, FPS: 15, Seconds: 2, VideoKbps: 150, KeyframeInterval: 7}},
		{"one keyframe", Options{Width: 96, Height: 64, FPS: 30, Seconds: 1, VideoKbps: 200, KeyframeInterval: 1000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := Generate(t.Context(), dir, tt.o); err != nil {
				t.Fatal(err)
			}
			c, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			checkClip(t, c, tt.o.withDefaults())
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 2 {
				t.Errorf("dir holds %d entries, want video and audio only", len(entries))
			}
		})
	}
}

func TestGenerateReachesBitrate(t *testing.T) {
	// The synthetic picture must be rich enough that CBR spends its budget.
	o := Options{Width: 320, Height: 180, Seconds: 2, VideoKbps: 400, KeyframeInterval: 30}
	dir := t.TempDir()
	if err := Generate(t.Context(), dir, o); err != nil {
		t.Fatal(err)
	}
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if kbps := videoKbps(c); kbps < 0.8*400 || kbps > 1.2*400 {
		t.Errorf("video bitrate %.0f kbps, want within 20%% of 400", kbps)
	}
}

func TestGenerateIsDeterministic(t *testing.T) {
	o := Options{Width: 64, Height: 48, FPS: 10, Seconds: 1, VideoKbps: 100, KeyframeInterval: 5}
	a, b := t.TempDir(), t.TempDir()
	for _, dir := range []string{a, b} {
		if err := Generate(t.Context(), dir, o); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{VideoFile, AudioFile} {
		x, err := os.ReadFile(filepath.Join(a, name))
		if err != nil {
			t.Fatal(err)
		}
		y, err := os.ReadFile(filepath.Join(b, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between two runs with the same options", name)
		}
	}
}

func TestGenerateErrors(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	// The default clip takes seconds to encode: this deadline ends it
	// while vpxenc runs.
	timeout, cancelTimeout := context.WithTimeout(context.Background(), time.Second)
	defer cancelTimeout()
	tests := []struct {
		name string
		ctx  context.Context
		o    Options
		want string
	}{
		{"odd width", context.Background(), Options{Width: 321, Height: 180}, "even"},
		{"negative fps", context.Background(), Options{FPS: -1}, "fps"},
		{"too long", context.Background(), Options{Seconds: 601}, "seconds"},
		{"bitrate too low", context.Background(), Options{VideoKbps: 1}, "video kbps"},
		{"cancelled", cancelled, Options{Width: 64, Height: 48, Seconds: 1}, context.Canceled.Error()},
		{"deadline while encoding", timeout, Options{}, context.DeadlineExceeded.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			err := Generate(tt.ctx, dir, tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Generate error = %v, want one containing %q", err, tt.want)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 0 {
				t.Errorf("failed Generate left %d files behind", len(entries))
			}
		})
	}
}

func TestGenerateNamesMissingPackage(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	err := Generate(context.Background(), t.TempDir(), Options{})
	if err == nil || !strings.Contains(err.Error(), "vpx-tools") || !errors.Is(err, exec.ErrNotFound) {
		t.Fatalf("Generate without vpxenc: %v, want an error naming vpx-tools", err)
	}
}

func TestValidateDefaults(t *testing.T) {
	if err := (Options{}).Validate(); err != nil {
		t.Fatalf("zero Options: %v", err)
	}
	want := Options{Width: 1280, Height: 720, FPS: 30, Seconds: 10, VideoKbps: 2000, KeyframeInterval: 60, AudioKbps: 32}
	if got := DefaultOptions(); got != want {
		t.Fatalf("DefaultOptions() = %+v, want %+v", got, want)
	}
}

// copyClip copies the committed small clip into a temporary directory,
// passing each file through edit (nil keeps it) and removing it when edit
// returns nil.
func copyClip(t *testing.T, editVideo, editAudio func([]byte) []byte) string {
	t.Helper()
	dir := t.TempDir()
	for name, edit := range map[string]func([]byte) []byte{VideoFile: editVideo, AudioFile: editAudio} {
		b, err := os.ReadFile(filepath.Join(smallDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if edit != nil {
			if b = edit(b); b == nil {
				continue
			}
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadErrors(t *testing.T) {
	const ivfHeader, ivfFrameHeader = 32, 12
	tests := []struct {
		name  string
		video func([]byte) []byte
		audio func([]byte) []byte
		want  string
	}{
		{"no video", remove, nil, "no such file"},
		{"no audio", nil, remove, "no such file"},
		{"not vp8", func(b []byte) []byte { copy(b[8:], "VP90"); return b }, nil, "want VP80"},
		{"zero timebase", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[16:], 0); return b }, nil, "timebase"},
		{"truncated video", func(b []byte) []byte { return b[:len(b)-10] }, nil, "frame 89"},
		{"no frames", func(b []byte) []byte { return b[:ivfHeader] }, nil, "no frames"},
		{"first frame not a keyframe", func(b []byte) []byte {
			n := int(binary.LittleEndian.Uint32(b[ivfHeader:]))
			return append(b[:ivfHeader:ivfHeader], b[ivfHeader+ivfFrameHeader+n:]...)
		}, nil, "not a keyframe"},
		{"not ogg", nil, func(b []byte) []byte { return []byte("not an ogg file at all, no") }, "opus header"},
		{"truncated audio", nil, func(b []byte) []byte { return b[:len(b)-5] }, "page"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyClip(t, tt.video, tt.audio)
			c, err := Load(dir)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load = %v, %v; want an error containing %q", c, err, tt.want)
			}
		})
	}
}

func TestLoadRejectsSeveralPacketsPerPage(t *testing.T) {
	// opusenc's default container delay puts up to a second of packets in
	// one Ogg page; Load must refuse such a file rather than send 1 s packets.
	dir := copyClip(t, nil, remove)
	wav := filepath.Join(t.TempDir(), "in.wav")
	if err := os.WriteFile(wav, newWAV(2), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(opusenc, "--quiet", "--framesize", "20", wav, filepath.Join(dir, AudioFile)).CombinedOutput()
	if err != nil {
		t.Fatalf("opusenc: %v: %s", err, out)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "one 20 ms packet per page") {
		t.Fatalf("Load = %v, want an error about packets per page", err)
	}
}

// remove is a copyClip edit that leaves the file out.
func remove([]byte) []byte { return nil }

func TestOpusDuration(t *testing.T) {
	tests := []struct {
		name   string
		packet []byte
		want   int
	}{
		{"silk 20 ms", []byte{1<<3 | 0}, 960},
		{"silk 60 ms", []byte{3<<3 | 0}, 2880},
		{"hybrid 20 ms", []byte{13<<3 | 0}, 960},
		{"celt 20 ms", []byte{31<<3 | 0}, 960},
		{"celt 2.5 ms", []byte{16<<3 | 0}, 120},
		{"two celt 10 ms frames", []byte{30<<3 | 1}, 960},
		{"two silk 20 ms frames", []byte{1<<3 | 2}, 1920},
		{"three celt 20 ms frames", []byte{31<<3 | 3, 3}, 2880},
		{"code 3 without count", []byte{31<<3 | 3}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := opusDuration(tt.packet); got != tt.want {
				t.Fatalf("opusDuration(%x) = %d, want %d", tt.packet, got, tt.want)
			}
		})
	}
}

func TestIsVP8Keyframe(t *testing.T) {
	tests := []struct {
		name  string
		frame []byte
		want  bool
	}{
		{"keyframe", []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01}, true},
		{"interframe", []byte{0x11, 0x02, 0x00, 0x00, 0x00}, false},
		{"keyframe bit without start code", []byte{0x10, 0x02, 0x00, 0x00, 0x00, 0x00}, false},
		{"short", []byte{0x10, 0x02, 0x00}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isVP8Keyframe(tt.frame); got != tt.want {
				t.Fatalf("isVP8Keyframe(%x) = %v, want %v", tt.frame, got, tt.want)
			}
		})
	}
}
