package cluster

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/confab/confab/sfu"
)

// KV layout (see docs/cluster.md). Every path segment taken from a node id,
// room name or producer id is escaped with escapeSegment.
const (
	kvRoot         = "confab/"
	nodesPrefix    = kvRoot + "nodes/"
	roomsPrefix    = kvRoot + "rooms/"
	roomNodesDir   = "nodes/"
	roomProdDir    = "producers/"
	roomRecordBody = "{}"
)

// nodeRecord is the JSON value of confab/nodes/{node}.
type nodeRecord struct {
	ID      string `json:"id"`
	URL     string `json:"url"`
	Version string `json:"version"`
	Load    int    `json:"load"`
	// Tracks is the number of local producers.
	Tracks int `json:"tracks"`
	// CPU is the share (0..1) of the machine's CPU the node's process used
	// recently.
	CPU float64 `json:"cpu"`
	// MaxParticipants is the node's participant limit (0: none).
	MaxParticipants int       `json:"maxParticipants,omitempty"`
	StartedAt       time.Time `json:"startedAt"`
	// Draining is set by Drain: the node still serves its rooms but takes
	// no new participants; peer lists offered to browsers skip it.
	Draining bool `json:"draining,omitempty"`
}

func nodeKey(node string) string { return nodesPrefix + escapeSegment(node) }

func roomPrefix(room string) string { return roomsPrefix + escapeSegment(room) + "/" }

func roomNodeKey(room, node string) string {
	return roomPrefix(room) + roomNodesDir + escapeSegment(node)
}

func producerKey(room, node, producerID string) string {
	return roomPrefix(room) + roomProdDir + escapeSegment(node) + "/" + escapeSegment(producerID)
}

// escapeSegment makes s safe as one KV path segment: bytes outside
// [A-Za-z0-9_-] become "~" followed by two lowercase hex digits. Dots are
// escaped too, so no segment is ever "." or ".." (which HTTP path cleaning
// in front of Consul would rewrite). Typical names pass unchanged.
func escapeSegment(s string) string {
	const hex = "0123456789abcdef"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
			b.WriteByte(c)
		default:
			b.WriteByte('~')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		}
	}
	return b.String()
}

// unescapeSegment reverses escapeSegment.
func unescapeSegment(s string) (string, error) {
	if !strings.Contains(s, "~") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '~' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("cluster: bad escape in key segment %q", s)
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("cluster: bad escape in key segment %q", s)
		}
		b.WriteByte(hi<<4 | lo)
		i += 2
	}
	return b.String(), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// roomKey is a parsed key below confab/rooms/.
type roomKey struct {
	Room     string
	Node     string
	Producer string // "" for a room record (rooms/{room}/nodes/{node})
}

// parseRoomKey parses confab/rooms/{room}/nodes/{node} and
// confab/rooms/{room}/producers/{node}/{producer}.
func parseRoomKey(key string) (roomKey, bool) {
	rest, ok := strings.CutPrefix(key, roomsPrefix)
	if !ok {
		return roomKey{}, false
	}
	parts := strings.Split(rest, "/")
	dec := func(s string) (string, bool) {
		v, err := unescapeSegment(s)
		return v, err == nil && v != ""
	}
	var k roomKey
	switch {
	case len(parts) == 3 && parts[1]+"/" == roomNodesDir:
	case len(parts) == 4 && parts[1]+"/" == roomProdDir:
		if k.Producer, ok = dec(parts[3]); !ok {
			return roomKey{}, false
		}
	default:
		return roomKey{}, false
	}
	if k.Room, ok = dec(parts[0]); !ok {
		return roomKey{}, false
	}
	if k.Node, ok = dec(parts[2]); !ok {
		return roomKey{}, false
	}
	return k, true
}

// parseNodeKey returns the node id of confab/nodes/{node}.
func parseNodeKey(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, nodesPrefix)
	if !ok || rest == "" || strings.Contains(rest, "/") {
		return "", false
	}
	id, err := unescapeSegment(rest)
	return id, err == nil && id != ""
}

// encodeProducer is the value of a producer key: the producerRecord of the
// producer as this node sees it, with Origin forced to the node and Remote
// false.
func encodeProducer(node string, info sfu.ProducerInfo) ([]byte, error) {
	b, err := json.Marshal(producerRecordOf(node, info))
	if err != nil {
		return nil, fmt.Errorf("cluster: encode producer %s: %w", info.ID, err)
	}
	return b, nil
}

// decodeProducer parses a producer value read from key k. The key is
// authoritative for origin and id; the result is marked Remote.
func decodeProducer(k roomKey, value []byte) (sfu.ProducerInfo, error) {
	var rec producerRecord
	if err := json.Unmarshal(value, &rec); err != nil {
		return sfu.ProducerInfo{}, fmt.Errorf("cluster: decode producer %s of node %s: %w", k.Producer, k.Node, err)
	}
	if rec.ID != k.Producer {
		return sfu.ProducerInfo{}, fmt.Errorf("cluster: producer record %s of node %s names id %q", k.Producer, k.Node, rec.ID)
	}
	return rec.remoteInfo(k.Node), nil
}

// kvState is the node's desired KV contents: every key the node should hold
// with its session and its value, plus the set of keys whose state in Consul
// may differ from it ("dirty"). Observer callbacks change it without
// blocking; the writer goroutine (Node.runWriter) applies dirty keys. It has
// its own mutex, never held while calling out.
type kvState struct {
	mu       sync.Mutex
	desired  map[string][]byte
	dirty    map[string]struct{}
	inflight map[string]struct{} // taken by the writer, not yet confirmed
	wake     chan struct{}       // capacity 1: "something is dirty"
	flushed  chan struct{}       // closed (and replaced) whenever the writer applied a batch
}

func newKVState() *kvState {
	return &kvState{
		desired:  make(map[string][]byte),
		dirty:    make(map[string]struct{}),
		inflight: make(map[string]struct{}),
		wake:     make(chan struct{}, 1),
		flushed:  make(chan struct{}),
	}
}

// written reports whether key is desired and its value is in Consul (not
// dirty, not in flight), and returns a channel closed at the writer's next
// applied batch, to wait on when it is not.
func (s *kvState) written(key string) (bool, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, want := s.desired[key]
	_, dirty := s.dirty[key]
	_, busy := s.inflight[key]
	return want && !dirty && !busy, s.flushed
}

// applied records that the writer finished a batch (ops): keys that failed
// were marked dirty again; every waiter of written is woken.
func (s *kvState) applied(ops []kvOp) {
	s.mu.Lock()
	for _, op := range ops {
		delete(s.inflight, op.Key)
	}
	close(s.flushed)
	s.flushed = make(chan struct{})
	s.mu.Unlock()
}

// set makes key hold value.
func (s *kvState) set(key string, value []byte) {
	s.mu.Lock()
	s.desired[key] = value
	s.dirty[key] = struct{}{}
	s.mu.Unlock()
	s.signal()
}

// del makes key absent.
func (s *kvState) del(key string) {
	s.mu.Lock()
	delete(s.desired, key)
	s.dirty[key] = struct{}{}
	s.mu.Unlock()
	s.signal()
}

// delPrefix makes every desired key below prefix absent.
func (s *kvState) delPrefix(prefix string) {
	s.mu.Lock()
	for k := range s.desired {
		if strings.HasPrefix(k, prefix) {
			delete(s.desired, k)
			s.dirty[k] = struct{}{}
		}
	}
	s.mu.Unlock()
	s.signal()
}

// isDirty reports whether key awaits a write.
func (s *kvState) isDirty(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.dirty[key]
	return ok
}

// get returns the desired value of key.
func (s *kvState) get(key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.desired[key]
	return v, ok
}

// markAll marks every desired key dirty (after a new session was created,
// all records must be acquired again).
func (s *kvState) markAll() {
	s.mu.Lock()
	for k := range s.desired {
		s.dirty[k] = struct{}{}
	}
	s.mu.Unlock()
	s.signal()
}

// markDirty marks key dirty again after a failed write.
func (s *kvState) markDirty(key string) {
	s.mu.Lock()
	s.dirty[key] = struct{}{}
	s.mu.Unlock()
}

// kvOp is one pending write: Value nil means delete.
type kvOp struct {
	Key   string
	Value []byte
}

// take returns the dirty keys with their desired state, sorted by key, and
// clears the dirty set.
func (s *kvState) take() []kvOp {
	s.mu.Lock()
	defer s.mu.Unlock()
	ops := make([]kvOp, 0, len(s.dirty))
	for k := range s.dirty {
		ops = append(ops, kvOp{Key: k, Value: s.desired[k]})
		s.inflight[k] = struct{}{}
	}
	clear(s.dirty)
	sort.Slice(ops, func(i, j int) bool { return ops[i].Key < ops[j].Key })
	return ops
}

// pending reports whether any key is dirty.
func (s *kvState) pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.dirty) > 0
}

func (s *kvState) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}
