package sfu

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// batchSlotSize is the largest datagram a batch slot holds; larger ones
// (never produced by the engine, whose MTU is 1460 bytes) are written
// directly.
const batchSlotSize = 1500

// batchConn is the engine's UDP socket as the ICE UDP mux sees it. Outside
// a burst every write goes straight to the socket. During a burst (between
// begin and end, which Producer.WriteRTP puts around its fan-out) writes
// are copied into a queue that is sent with one sendmmsg when it holds
// maxBatch datagrams and when a burst ends, so a fan-out to N subscribers
// costs about N/maxBatch system calls instead of N, and adds no delay
// beyond the fan-out itself. Writes of other goroutines (ICE, DTLS, RTCP,
// other producers) that arrive during a burst join the queue and leave with
// it, at the latest when the burst ends; they are never held longer.
//
// It implements net.PacketConn and the allocation-free
// ice.AddrPortReaderWriter. All methods are safe for concurrent use.
type batchConn struct {
	conn    *net.UDPConn
	batch   batchWriter
	v4      bool // socket family: only destinations of it are queued
	enabled bool // batching on (WriteBatch > 1)

	bursts atomic.Int32 // open bursts
	closed atomic.Bool

	mu sync.Mutex // guards q
	q  *writeBatch

	// sendMu serialises flushes, so that batches leave in the order they
	// were queued. spare is owned by the holder of sendMu.
	sendMu sync.Mutex
	spare  *writeBatch
}

// batchWriter is sendmmsg: *ipv4.PacketConn or *ipv6.PacketConn (their
// Message types are both socket.Message).
type batchWriter interface {
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// writeBatch is a queue of datagrams with preallocated storage.
type writeBatch struct {
	ms    []ipv4.Message
	addrs []net.UDPAddr
	ips   [][16]byte
	bufs  [][batchSlotSize]byte
	n     int
}

func newWriteBatch(size int) *writeBatch {
	w := &writeBatch{
		ms:    make([]ipv4.Message, size),
		addrs: make([]net.UDPAddr, size),
		ips:   make([][16]byte, size),
		bufs:  make([][batchSlotSize]byte, size),
	}
	for i := range w.ms {
		w.ms[i].Buffers = make([][]byte, 1)
		w.ms[i].Addr = &w.addrs[i]
	}
	return w
}

// add copies b for addr into the next slot; the caller checks n < len(ms).
func (w *writeBatch) add(b []byte, addr netip.AddrPort) {
	i := w.n
	w.n++
	w.ips[i] = addr.Addr().As16()
	w.addrs[i].IP = w.ips[i][:]
	w.addrs[i].Port = int(addr.Port())
	w.ms[i].Buffers[0] = w.bufs[i][:copy(w.bufs[i][:], b)]
}

// newBatchConn wraps conn; maxBatch <= 1 disables batching.
func newBatchConn(conn *net.UDPConn, maxBatch int) *batchConn {
	c := &batchConn{conn: conn, enabled: maxBatch > 1}
	if la, ok := conn.LocalAddr().(*net.UDPAddr); ok && la.IP.To4() != nil {
		c.v4 = true
		c.batch = ipv4.NewPacketConn(conn)
	} else {
		c.batch = ipv6.NewPacketConn(conn)
	}
	if c.enabled {
		c.q = newWriteBatch(maxBatch)
		c.spare = newWriteBatch(maxBatch)
	}
	return c
}

// begin opens a burst: writes are queued until the matching end. A nil
// batchConn ignores bursts.
func (c *batchConn) begin() {
	if c != nil && c.enabled {
		c.bursts.Add(1)
	}
}

// end closes a burst and sends everything queued.
func (c *batchConn) end() {
	if c != nil && c.enabled {
		c.bursts.Add(-1)
		c.flush()
	}
}

// WriteToAddrPort queues b during a burst, else writes it. A queued write
// reports success; a send error later only drops that datagram (as UDP
// may anyway).
func (c *batchConn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	if !c.enabled || c.bursts.Load() == 0 || len(b) > batchSlotSize || !c.queueable(addr) || c.closed.Load() {
		return c.conn.WriteToUDPAddrPort(b, addr)
	}
	for {
		c.mu.Lock()
		if c.q.n < len(c.q.ms) {
			c.q.add(b, addr)
			full := c.q.n == len(c.q.ms)
			c.mu.Unlock()
			// A burst that ended after the check above may have flushed
			// before b was queued: then nobody else will send it.
			if full || c.bursts.Load() == 0 {
				c.flush()
			}
			return len(b), nil
		}
		c.mu.Unlock()
		c.flush() // full: another writer is about to flush it, or just did
	}
}

// queueable reports whether addr is of the socket's family (anything else
// goes straight to the socket, which reports the error).
func (c *batchConn) queueable(addr netip.AddrPort) bool {
	a := addr.Addr()
	if c.v4 {
		return a.Is4() || a.Is4In6()
	}
	return a.Is6() && !a.Is4In6()
}

// flush sends the queued datagrams.
func (c *batchConn) flush() {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	c.mu.Lock()
	w := c.q
	if w.n == 0 {
		c.mu.Unlock()
		return
	}
	c.q = c.spare
	c.mu.Unlock()
	c.send(w)
	w.n = 0
	c.spare = w
}

// send writes w's datagrams with as few sendmmsg calls as the kernel
// allows; a datagram the kernel refuses is skipped.
func (c *batchConn) send(w *writeBatch) {
	ms := w.ms[:w.n]
	for len(ms) > 0 {
		n, err := c.batch.WriteBatch(ms, 0)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil && n <= 0 {
			n = 1 // the first one failed: drop it and go on
		}
		ms = ms[n:]
	}
}

// WriteTo implements net.PacketConn.
func (c *batchConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if ua, ok := addr.(*net.UDPAddr); ok {
		return c.WriteToAddrPort(b, ua.AddrPort())
	}
	return c.conn.WriteTo(b, addr)
}

// ReadFromAddrPort implements ice.AddrPortReaderWriter.
func (c *batchConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	return c.conn.ReadFromUDPAddrPort(b)
}

// ReadFrom implements net.PacketConn.
func (c *batchConn) ReadFrom(b []byte) (int, net.Addr, error) { return c.conn.ReadFrom(b) }

// Close sends what is queued and closes the socket; later writes fail.
func (c *batchConn) Close() error {
	c.closed.Store(true)
	if c.enabled {
		c.flush()
	}
	return c.conn.Close()
}

// LocalAddr implements net.PacketConn.
func (c *batchConn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// SetDeadline implements net.PacketConn.
func (c *batchConn) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// SetReadDeadline implements net.PacketConn.
func (c *batchConn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// SetWriteDeadline implements net.PacketConn.
func (c *batchConn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }
