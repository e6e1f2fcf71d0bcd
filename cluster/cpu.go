package cluster

import (
	"math"
	"runtime"
	"sync"
	"time"
)

// cpuMeter measures the share of the machine's CPU the process used
// between two calls of share. Safe for concurrent use.
type cpuMeter struct {
	mu       sync.Mutex
	lastWall time.Time
	lastCPU  time.Duration
	value    float64
}

func newCPUMeter() *cpuMeter {
	m := &cpuMeter{lastWall: time.Now()}
	m.lastCPU, _ = processCPU()
	return m
}

// share returns the CPU share since the previous call (or the previous
// value when called again within 500 ms), rounded to cpuStep.
func (m *cpuMeter) share() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	wall := now.Sub(m.lastWall)
	if wall < 500*time.Millisecond {
		return m.value
	}
	cpu, ok := processCPU()
	if !ok {
		return 0
	}
	v := float64(cpu-m.lastCPU) / float64(wall) / float64(runtime.NumCPU())
	m.lastWall, m.lastCPU = now, cpu
	v = math.Round(min(max(v, 0), 1)/cpuStep) * cpuStep
	m.value = math.Round(v*100) / 100
	return m.value
}
