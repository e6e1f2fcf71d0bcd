package clip

import (
	"testing"
)

// BenchmarkGenerate measures the generation of the default clip (1280x720,
// 30 fps, 10 s, 2000 kbps) and reports the real bitrate the encoder reached
// and the mean keyframe size. Run it with -benchtime=1x: one iteration takes
// seconds.
func BenchmarkGenerate(b *testing.B) {
	var c *Clip
	for b.Loop() {
		dir := b.TempDir()
		if err := Generate(b.Context(), dir, Options{}); err != nil {
			b.Fatal(err)
		}
		var err error
		if c, err = Load(dir); err != nil {
			b.Fatal(err)
		}
	}
	keyBytes, keys := 0, 0
	for _, f := range c.Video {
		if f.Keyframe {
			keyBytes += len(f.Data)
			keys++
		}
	}
	b.ReportMetric(videoKbps(c), "video-kbps")
	b.ReportMetric(float64(keyBytes)/float64(keys), "keyframe-B")
}

// BenchmarkY4M measures the Go side of generation: rendering one 1280x720
// frame of the synthetic video.
func BenchmarkY4M(b *testing.B) {
	o := Options{Seconds: 600}.withDefaults()
	v := newY4M(o)
	b.SetBytes(int64(o.Width * o.Height * 3 / 2))
	for b.Loop() {
		if v.frame == o.FPS*o.Seconds {
			v.frame = 0
		}
		v.render()
	}
}
