package peer

import (
	"errors"
	"net"
	"time"
)

// WriteEvery calls write every interval until stop is closed or write
// reports that its connection is closed (net.ErrClosed); other write
// errors (a sender not negotiated yet) are ignored. It is the media loop
// of a synthetic client track: write advances the packet and sends it.
func WriteEvery(stop <-chan struct{}, interval time.Duration, write func() error) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		select {
		case <-stop: // closed while both were ready: stop wins
			return
		default:
		}
		if err := write(); errors.Is(err, net.ErrClosed) {
			return
		}
	}
}
