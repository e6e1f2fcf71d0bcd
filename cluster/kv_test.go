package cluster

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/confab/confab/sfu"
)

func TestEscapeSegment(t *testing.T) {
	tests := []struct{ in, want string }{
		{"demo-room_1", "demo-room_1"},
		{"a.b", "a~2eb"},
		{"..", "~2e~2e"},
		{"a/b", "a~2fb"},
		{"100%", "100~25"},
		{"x~y", "x~7ey"},
		{"café", "caf~c3~a9"},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got := escapeSegment(tt.in)
			if got != tt.want {
				t.Fatalf("escapeSegment(%q) = %q, want %q", tt.in, got, tt.want)
			}
			back, err := unescapeSegment(got)
			if err != nil || back != tt.in {
				t.Fatalf("unescapeSegment(%q) = %q, %v; want %q", got, back, err, tt.in)
			}
		})
	}
	for _, bad := range []string{"~", "~2", "~zz", "a~g0"} {
		if _, err := unescapeSegment(bad); err == nil {
			t.Errorf("unescapeSegment(%q) succeeded, want error", bad)
		}
	}
}

func TestParseKeys(t *testing.T) {
	tests := []struct {
		key  string
		want roomKey
		ok   bool
	}{
		{key: roomNodeKey("r.1", "n/a"), want: roomKey{Room: "r.1", Node: "n/a"}, ok: true},
		{key: producerKey("room", "node-b", "p~1"), want: roomKey{Room: "room", Node: "node-b", Producer: "p~1"}, ok: true},
		{key: "confab/rooms/room/producers/node", ok: false},
		{key: "confab/rooms/room/other/node", ok: false},
		{key: "confab/rooms/room/nodes/", ok: false},
		{key: "confab/rooms/room/producers/n/p/extra", ok: false},
		{key: "confab/rooms/room/nodes/~zz", ok: false},
		{key: "confab/nodes/x", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, ok := parseRoomKey(tt.key)
			if ok != tt.ok || (ok && got != tt.want) {
				t.Fatalf("parseRoomKey(%q) = %+v, %v; want %+v, %v", tt.key, got, ok, tt.want, tt.ok)
			}
		})
	}
	if id, ok := parseNodeKey(nodeKey("node.1")); !ok || id != "node.1" {
		t.Fatalf("parseNodeKey(nodeKey(node.1)) = %q, %v", id, ok)
	}
	for _, bad := range []string{"confab/nodes/", "confab/nodes/a/b", "confab/rooms/a", "confab/nodes/~"} {
		if _, ok := parseNodeKey(bad); ok {
			t.Errorf("parseNodeKey(%q) succeeded", bad)
		}
	}
}

func TestProducerCodec(t *testing.T) {
	info := sfu.ProducerInfo{
		ID: "p1", Kind: sfu.KindVideo, ParticipantID: "u1", ParticipantName: "Alice",
		Codec:  sfu.Codec{MimeType: "video/VP8", ClockRate: 90000},
		Origin: "wrong", Remote: true,
	}
	b, err := encodeProducer("node-a", info)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"origin":"node-a"`)) || !bytes.Contains(b, []byte(`"remote":false`)) {
		t.Fatalf("encoded producer %s lacks origin node-a / remote false", b)
	}
	got, err := decodeProducer(roomKey{Room: "r", Node: "node-a", Producer: "p1"}, b)
	if err != nil {
		t.Fatal(err)
	}
	want := info
	want.Origin, want.Remote = "node-a", true
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decodeProducer = %+v, want %+v", got, want)
	}
	if _, err := decodeProducer(roomKey{Node: "node-a", Producer: "other"}, b); err == nil {
		t.Fatal("decodeProducer accepted a record whose id differs from its key")
	}
	if _, err := decodeProducer(roomKey{Node: "node-a", Producer: "p1"}, []byte("{")); err == nil {
		t.Fatal("decodeProducer accepted malformed JSON")
	}
}

func TestKVState(t *testing.T) {
	s := newKVState()
	s.set("a", []byte("1"))
	s.set("b", []byte("2"))
	s.del("c")
	ops := s.take()
	if len(ops) != 3 || ops[0].Key != "a" || string(ops[0].Value) != "1" || ops[2].Key != "c" || ops[2].Value != nil {
		t.Fatalf("take = %+v", ops)
	}
	if s.pending() || len(s.take()) != 0 {
		t.Fatal("take did not clear the dirty set")
	}
	// Coalescing: the last change of a key wins.
	s.set("p", []byte("x"))
	s.del("p")
	if ops := s.take(); len(ops) != 1 || ops[0].Key != "p" || ops[0].Value != nil {
		t.Fatalf("set+del = %+v, want one delete", ops)
	}
	s.markAll()
	if ops := s.take(); len(ops) != 2 {
		t.Fatalf("markAll marked %d keys, want 2 (a, b)", len(ops))
	}
	s.set("rooms/r/producers/n/1", []byte("x"))
	s.set("rooms/r/producers/n/2", []byte("x"))
	s.set("rooms/r/producers/m/1", []byte("x"))
	_ = s.take()
	s.delPrefix("rooms/r/producers/n/")
	ops = s.take()
	if len(ops) != 2 || !strings.HasPrefix(ops[0].Key, "rooms/r/producers/n/") || ops[0].Value != nil {
		t.Fatalf("delPrefix = %+v", ops)
	}
	if _, ok := s.get("rooms/r/producers/m/1"); !ok {
		t.Fatal("delPrefix deleted a key outside the prefix")
	}
	s.markDirty("zzz")
	if !s.isDirty("zzz") {
		t.Fatal("markDirty did not mark")
	}
}
