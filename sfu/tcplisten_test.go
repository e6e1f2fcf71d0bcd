package sfu

import (
	"errors"
	"net"
	"testing"
)

// TestTrackingListenerClosesConns: closing the listener closes the
// connections it accepted (a reader blocked on one returns), except those
// already closed, and accepts no more.
func TestTrackingListenerClosesConns(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := newTrackingListener(raw)
	tests := []struct {
		name        string
		closeBefore bool
	}{
		{"open connection", false},
		{"connection closed by its owner", true},
	}
	type accepted struct {
		c    net.Conn
		read chan error
	}
	var conns []accepted
	for range tests {
		client, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = client.Close() })
		c, err := ln.Accept()
		if err != nil {
			t.Fatalf("Accept: %v", err)
		}
		a := accepted{c: c, read: make(chan error, 1)}
		go func() { // a reader like pion's, waiting for a first packet that never comes
			_, err := c.Read(make([]byte, 16))
			a.read <- err
		}()
		conns = append(conns, a)
	}
	for i, tc := range tests {
		if tc.closeBefore {
			_ = conns[i].c.Close()
			<-conns[i].read
		}
	}
	if err := ln.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.closeBefore {
				if err := <-conns[i].read; err == nil {
					t.Error("read on an accepted connection succeeded after the listener closed")
				}
			}
		})
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
	}
	if n := len(ln.conns); n != 0 {
		t.Errorf("%d connections still tracked", n)
	}
}
