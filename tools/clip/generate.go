package clip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// Defaults of Options, used for its zero fields.
const (
	DefaultWidth            = 1280
	DefaultHeight           = 720
	DefaultFPS              = 30
	DefaultSeconds          = 10
	DefaultVideoKbps        = 2000
	DefaultKeyframeInterval = 60
	DefaultAudioKbps        = 32
)

// Encoder binaries and the Debian packages that provide them.
const (
	vpxenc  = "vpxenc"
	vpxPkg  = "vpx-tools"
	opusenc = "opusenc"
	opusPkg = "opus-tools"
)

// waitDelay bounds how long Generate waits for an encoder's pipes after the
// encoder was killed because ctx ended.
const waitDelay = 5 * time.Second

// Options for Generate; zero values get defaults (1280x720, 30 fps, 10 s,
// 2000 kbps, keyframe every 60 frames, opus 32 kbps).
type Options struct {
	Width, Height    int // picture size in pixels (even numbers)
	FPS              int // frames per second
	Seconds          int // length of the clip
	VideoKbps        int // VP8 target bitrate (CBR), kbit/s
	KeyframeInterval int // a keyframe every this many frames
	AudioKbps        int // Opus target bitrate, kbit/s
}

// DefaultOptions returns the Options Generate uses for a zero Options.
func DefaultOptions() Options {
	return Options{}.withDefaults()
}

// withDefaults returns o with every zero field set to its default.
func (o Options) withDefaults() Options {
	set := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	set(&o.Width, DefaultWidth)
	set(&o.Height, DefaultHeight)
	set(&o.FPS, DefaultFPS)
	set(&o.Seconds, DefaultSeconds)
	set(&o.VideoKbps, DefaultVideoKbps)
	set(&o.KeyframeInterval, DefaultKeyframeInterval)
	set(&o.AudioKbps, DefaultAudioKbps)
	return o
}

// Validate reports the first field out of range, after defaults are applied
// to zero fields (so a zero Options is valid).
func (o Options) Validate() error {
	o = o.withDefaults()
	checks := []struct {
		name     string
		v        int
		min, max int
	}{
		{"width", o.Width, 16, 3840},
		{"height", o.Height, 16, 2160},
		{"fps", o.FPS, 1, 120},
		{"seconds", o.Seconds, 1, 600},
		{"video kbps", o.VideoKbps, 50, 50000},
		{"keyframe interval", o.KeyframeInterval, 1, 100000},
		{"audio kbps", o.AudioKbps, 6, 256},
	}
	for _, c := range checks {
		if c.v < c.min || c.v > c.max {
			return fmt.Errorf("clip: %s %d out of range [%d, %d]", c.name, c.v, c.min, c.max)
		}
	}
	if o.Width%2 != 0 || o.Height%2 != 0 {
		return fmt.Errorf("clip: size %dx%d: width and height must be even (4:2:0 chroma)", o.Width, o.Height)
	}
	return nil
}

// Generate writes dir/video.ivf and dir/audio.ogg by piping a Go-generated Y4M
// (moving pattern with enough detail/noise that the encoder actually reaches
// VideoKbps) into `vpxenc` (Debian package vpx-tools, realtime, CBR) and a
// Go-generated WAV into `opusenc` (package opus-tools). Returns a clear error
// naming the package when a binary is missing.
//
// The video is VP8 with the realtime deadline, CBR with WebRTC-like rate
// control buffers and quantizer range, error resilient, no frame dropping and
// a keyframe exactly every KeyframeInterval frames. The audio is 48 kHz mono
// Opus in 20 ms packets, one packet per Ogg page. The inputs are
// deterministic, so the same Options give the same clip. Files are written
// under temporary names and renamed into place only on success.
func Generate(ctx context.Context, dir string, o Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	o = o.withDefaults()
	vpx, err := lookPath(vpxenc, vpxPkg)
	if err != nil {
		return err
	}
	opus, err := lookPath(opusenc, opusPkg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("clip: generate: %w", err)
	}

	audioTmp := filepath.Join(dir, "."+AudioFile+".tmp")
	videoTmp := filepath.Join(dir, "."+VideoFile+".tmp")
	defer os.Remove(audioTmp) //nolint:errcheck // gone after a successful rename
	defer os.Remove(videoTmp) //nolint:errcheck // gone after a successful rename

	wav := newWAV(o.Seconds)
	opusArgs := []string{
		"--quiet",
		"--bitrate", strconv.Itoa(o.AudioKbps),
		"--framesize", "20",
		"--max-delay", "20", // flush every packet: one packet per Ogg page
		"--serial", "1", // deterministic output
		"-", audioTmp,
	}
	if err := run(ctx, opus, opusArgs, bytes.NewReader(wav)); err != nil {
		return fmt.Errorf("clip: generate audio: %w", err)
	}

	kf := strconv.Itoa(o.KeyframeInterval)
	vpxArgs := []string{
		"--quiet",
		"--codec=vp8",
		"--ivf",
		"--rt",
		// WebRTC's desktop speed. Negative means a fixed speed; a positive
		// value adapts the speed to wall-clock time and makes the output
		// depend on the machine's load.
		"--cpu-used=-6",
		"--threads=2",
		"--end-usage=cbr",
		"--target-bitrate=" + strconv.Itoa(o.VideoKbps),
		// WebRTC's libvpx settings: rate control buffer and quantizer range.
		"--buf-initial-sz=500",
		"--buf-optimal-sz=600",
		"--buf-sz=1000",
		"--undershoot-pct=100",
		"--overshoot-pct=15",
		"--min-q=2",
		"--max-q=56",
		// WebRTC's keyframe size cap, in percent of the mean frame:
		// optimal buffer (600 ms) * 0.5 * fps / 10, at least 300.
		"--max-intra-rate=" + strconv.Itoa(max(300, 30*o.FPS)),
		"--lag-in-frames=0",
		"--auto-alt-ref=0",
		"--error-resilient=1",
		"--drop-frame=0", // exactly FPS*Seconds frames
		"--resize-allowed=0",
		"--static-thresh=0",
		"--noise-sensitivity=0",
		"--kf-min-dist=" + kf,
		"--kf-max-dist=" + kf,
		"--limit=" + strconv.Itoa(o.FPS*o.Seconds),
		"-o", videoTmp,
		"-",
	}
	if err := run(ctx, vpx, vpxArgs, newY4M(o)); err != nil {
		return fmt.Errorf("clip: generate video: %w", err)
	}

	if err := os.Rename(audioTmp, filepath.Join(dir, AudioFile)); err != nil {
		return fmt.Errorf("clip: generate: %w", err)
	}
	if err := os.Rename(videoTmp, filepath.Join(dir, VideoFile)); err != nil {
		return fmt.Errorf("clip: generate: %w", err)
	}
	return nil
}

// lookPath finds an encoder binary, naming the Debian package in the error.
func lookPath(bin, pkg string) (string, error) {
	p, err := exec.LookPath(bin)
	if err != nil {
		return "", fmt.Errorf("clip: %s not found (install the Debian package %s: apt-get install %s): %w", bin, pkg, pkg, err)
	}
	return p, nil
}

// run runs an encoder with stdin as its input and returns an error carrying
// the tail of its standard error when it fails. The encoder is killed when ctx
// ends.
func run(ctx context.Context, bin string, args []string, stdin io.Reader) error {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = stdin
	var stderr tailBuffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = waitDelay
	if err := cmd.Run(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("%s: %w", filepath.Base(bin), errors.Join(ctxErr, err))
		}
		return fmt.Errorf("%s: %w: %s", filepath.Base(bin), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return nil
}

// tailBuffer keeps the last tailMax bytes written to it.
type tailBuffer struct{ b []byte }

// tailMax is how much of an encoder's standard error is kept for errors.
const tailMax = 2048

// Write keeps the tail of p; it never fails.
func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > tailMax {
		t.b = append(t.b[:0], t.b[len(t.b)-tailMax:]...)
	}
	return len(p), nil
}

// Bytes returns the kept tail.
func (t *tailBuffer) Bytes() []byte { return t.b }
