package clip

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
)

// Synthetic input for the encoders. The video imitates a camera: a detailed
// texture that pans, a second textured disc that moves across it on its own
// path, slow colour drift, and fresh sensor-like noise in every frame. The
// noise is what makes the encoder spend its bitrate: every frame has detail
// that motion compensation cannot predict from the previous one.

const (
	tileBits = 9 // the textures are 512x512 tiles
	tileSize = 1 << tileBits
	tileMask = tileSize - 1
	// noiseLen is the length of the table of precomputed noise samples; each
	// row of each frame reads it from a random offset.
	noiseLen = 1 << 20
	// refNoise is the peak amplitude of the per-frame luma noise at refBPP
	// bits per pixel (2000 kbps at 1280x720, 30 fps); other bit budgets scale
	// it with the square root of the ratio, within [minNoise, maxNoise], so
	// that CBR lands near its target at any size and bitrate. Chroma noise is
	// a third of the luma noise.
	refNoise = 12
	refBPP   = 2000e3 / (1280 * 720 * 30)
	minNoise = 2
	maxNoise = 20
	// seed makes the clip reproducible.
	seed = 0x636f6e666162
)

// y4m is an io.Reader producing a YUV4MPEG2 (4:2:0) stream of o.FPS*o.Seconds
// synthetic frames, rendered one frame at a time as the reader is drained.
type y4m struct {
	o      Options
	rng    *rand.Rand
	luma   []uint8 // tileSize*tileSize texture for Y
	chroma []uint8 // tileSize*tileSize texture for U and V
	noise  []int8  // noiseLen samples of per-frame luma noise
	frame  int     // index of the next frame to render
	buf    []byte  // the rendered frame (or header) being read
	off    int     // read offset in buf
}

// newY4M returns the reader of the synthetic video for o (defaults applied).
func newY4M(o Options) *y4m {
	rng := rand.New(rand.NewPCG(seed, uint64(o.Width)<<32|uint64(o.Height)))
	v := &y4m{
		o:      o,
		rng:    rng,
		luma:   texture(rng, 0.005, 28, 10),
		chroma: texture(rng, 0.004, 12, 0),
		noise:  make([]int8, noiseLen),
	}
	bpp := float64(o.VideoKbps) * 1000 / float64(o.Width*o.Height*o.FPS)
	amp := min(max(int(math.Round(refNoise*math.Sqrt(bpp/refBPP))), minNoise), maxNoise)
	for i := range v.noise {
		v.noise[i] = int8(rng.IntN(2*amp+1) - amp)
	}
	header := fmt.Sprintf("YUV4MPEG2 W%d H%d F%d:1 Ip A1:1 C420jpeg\n", o.Width, o.Height, o.FPS)
	v.buf = append(make([]byte, 0, len(header)), header...)
	return v
}

// texture returns a tileSize*tileSize tile that wraps around seamlessly: a sum
// of sinusoids with random directions (whole periods per tile), from coarse
// shapes at lowFreq cycles per pixel to fine detail at 16 times that, with
// amplitudes falling as frequencies rise, plus fixed fine grain of amplitude
// grain.
func texture(rng *rand.Rand, lowFreq, amp float64, grain int) []uint8 {
	type wave struct{ fx, fy, phase, amp float64 }
	const n = 16
	waves := make([]wave, n)
	for i := range waves {
		f := lowFreq * math.Pow(16, float64(i)/(n-1))
		angle := rng.Float64() * 2 * math.Pi
		// Round to whole cycles per tile so that the tile is periodic.
		cx := math.Round(f * math.Cos(angle) * tileSize)
		cy := math.Round(f * math.Sin(angle) * tileSize)
		waves[i] = wave{
			fx:    2 * math.Pi * cx / tileSize,
			fy:    2 * math.Pi * cy / tileSize,
			phase: rng.Float64() * 2 * math.Pi,
			amp:   amp / math.Sqrt(float64(1+i)),
		}
	}
	t := make([]uint8, tileSize*tileSize)
	for y := range tileSize {
		for x := range tileSize {
			s := 128.0
			for _, w := range waves {
				s += w.amp * math.Sin(w.fx*float64(x)+w.fy*float64(y)+w.phase)
			}
			s += float64(rng.IntN(2*grain+1) - grain)
			t[y*tileSize+x] = clamp(int(s))
		}
	}
	return t
}

// clamp limits v to a byte.
func clamp(v int) uint8 {
	return uint8(min(max(v, 0), 255))
}

// Read implements io.Reader; it returns io.EOF after the last frame.
func (v *y4m) Read(p []byte) (int, error) {
	if v.off == len(v.buf) {
		if v.frame == v.o.FPS*v.o.Seconds {
			return 0, io.EOF
		}
		v.render()
	}
	n := copy(p, v.buf[v.off:])
	v.off += n
	return n, nil
}

// render writes the next frame, with its FRAME marker, into buf.
func (v *y4m) render() {
	w, h := v.o.Width, v.o.Height
	cw, ch := w/2, h/2
	const marker = "FRAME\n"
	size := len(marker) + w*h + 2*cw*ch
	if cap(v.buf) < size {
		v.buf = make([]byte, size)
	}
	v.buf = v.buf[:size]
	v.off = 0
	copy(v.buf, marker)
	yPlane := v.buf[len(marker) : len(marker)+w*h]
	uPlane := v.buf[len(marker)+w*h : len(marker)+w*h+cw*ch]
	vPlane := v.buf[len(marker)+w*h+cw*ch:]

	t := float64(v.frame) / float64(v.o.FPS) // seconds
	v.frame++
	// Speeds scale with the picture so that small and large clips look alike.
	scale := float64(w) / 1280
	panX := int(t * 37 * scale)
	panY := int(12 * scale * math.Sin(t*0.9))
	// The disc moves on a Lissajous path and its texture scrolls the other way.
	r := float64(min(w, h)) / 5
	cx := float64(w)/2 + (float64(w)/2-r)*math.Sin(t*0.7)
	cy := float64(h)/2 + (float64(h)/2-r)*math.Sin(t*1.1+1)
	discX, discY := -int(t*90*scale), int(t*50*scale)

	for y := range h {
		row := yPlane[y*w : (y+1)*w]
		tile := v.luma[((y+panY)&tileMask)<<tileBits:]
		nz := v.noise[v.rng.IntN(noiseLen-w):]
		dy := float64(y) - cy
		x0, x1 := w, w // columns [x0, x1) are inside the disc
		if d := r*r - dy*dy; d > 0 {
			half := math.Sqrt(d)
			x0 = max(0, int(cx-half))
			x1 = min(w, int(cx+half))
		}
		for x := range w {
			row[x] = clamp(int(tile[(x+panX)&tileMask]) + int(nz[x]))
		}
		if x0 < x1 {
			dtile := v.luma[((y+discY)&tileMask)<<tileBits:]
			for x := x0; x < x1; x++ {
				// Brighter, so the disc edge is a real edge.
				row[x] = clamp(int(dtile[(x+discX)&tileMask]) + 60 + int(nz[x]))
			}
		}
	}
	hue := int(t * 8)
	for y := range ch {
		nz := v.noise[v.rng.IntN(noiseLen-cw):]
		ut := v.chroma[((y+hue)&tileMask)<<tileBits:]
		vt := v.chroma[((y*3+tileSize/2)&tileMask)<<tileBits:]
		for x := range cw {
			n := int(nz[x]) / 3
			uPlane[y*cw+x] = clamp(int(ut[(x+panX/2)&tileMask]) + n)
			vPlane[y*cw+x] = clamp(int(vt[(x+hue)&tileMask]) - n)
		}
	}
}

// Audio synthesis: a voice-like tone (a gliding fundamental with harmonics,
// switched on and off at a syllable rate) over low background noise.

const (
	sampleRate = 48000
	// voiceLevel and noiseLevel are peak amplitudes on the 16-bit scale.
	voiceLevel = 9000
	noiseLevel = 600
)

// newWAV returns a mono 16-bit 48 kHz WAV file of the given length.
func newWAV(seconds int) []byte {
	n := seconds * sampleRate
	const headerLen = 44
	b := make([]byte, headerLen+2*n)
	le := binary.LittleEndian
	copy(b[0:], "RIFF")
	le.PutUint32(b[4:], uint32(36+2*n))
	copy(b[8:], "WAVEfmt ")
	le.PutUint32(b[16:], 16)           // fmt chunk size
	le.PutUint16(b[20:], 1)            // PCM
	le.PutUint16(b[22:], 1)            // channels
	le.PutUint32(b[24:], sampleRate)   // sample rate
	le.PutUint32(b[28:], 2*sampleRate) // byte rate
	le.PutUint16(b[32:], 2)            // block align
	le.PutUint16(b[34:], 16)           // bits per sample
	copy(b[36:], "data")
	le.PutUint32(b[40:], uint32(2*n))

	rng := rand.New(rand.NewPCG(seed, 1))
	phase := 0.0
	for i := range n {
		t := float64(i) / sampleRate
		f0 := 160 + 40*math.Sin(2*math.Pi*0.5*t) // gliding pitch
		phase += 2 * math.Pi * f0 / sampleRate
		// Syllables: about 4 per second, with soft edges.
		env := math.Max(0, math.Sin(2*math.Pi*2*t)) * (0.6 + 0.4*math.Sin(2*math.Pi*0.3*t))
		s := 0.0
		for k := 1; k <= 5; k++ {
			s += math.Sin(float64(k)*phase) / float64(k)
		}
		v := voiceLevel*env*s/2.3 + noiseLevel*(2*rng.Float64()-1)
		le.PutUint16(b[headerLen+2*i:], uint16(int16(max(-32768, min(32767, v)))))
	}
	return b
}
