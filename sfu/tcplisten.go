package sfu

import (
	"net"
	"sync"
)

// trackingListener is the ICE-TCP listener handed to pion's TCP mux: it
// closes, when it is closed, every connection it accepted. The mux's Close
// closes the listener and the connections it has registered, then waits
// for its per-connection goroutines; one of them may still be waiting up
// to 30 s for the first STUN packet of a connection, and may then register
// it after the mux closed, where nothing closes it until the peer does. A
// client nobody tells to leave (a WHIP encoder or a WHEP player of a node
// that shuts down) would hold Engine.Close that long or longer.
type trackingListener struct {
	net.Listener

	mu     sync.Mutex
	closed bool
	conns  map[*trackedConn]struct{}
}

func newTrackingListener(ln net.Listener) *trackingListener {
	return &trackingListener{Listener: ln, conns: make(map[*trackedConn]struct{})}
}

// Accept implements net.Listener.
func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	tc := &trackedConn{Conn: c, l: l}
	l.conns[tc] = struct{}{}
	return tc, nil
}

// Close implements net.Listener: it closes the listener and every
// connection still open.
func (l *trackingListener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = make(map[*trackedConn]struct{})
	l.mu.Unlock()
	for c := range conns {
		_ = c.Conn.Close()
	}
	return err
}

// trackedConn is a connection of a trackingListener.
type trackedConn struct {
	net.Conn
	l *trackingListener
}

// Close implements net.Conn and forgets the connection.
func (c *trackedConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}
