package sfu

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"golang.org/x/time/rate"
)

// Engine owns the ICE UDP mux socket, the rooms, and (through them) every
// participant peer connection. Create it with New, close it with Close.
// All methods are safe for concurrent use.
type Engine struct {
	cfg   Config
	log   *slog.Logger
	tr    *transport
	stats *engineStats // counters for Stats
	dyn   *dynacast    // pauses unneeded video layers at their sources
	// speakers detects who speaks among the local audio producers.
	speakers *speakerMonitor
	// fanout is the pool of workers that share large fan-outs (shard.go).
	fanout *fanoutPool

	// wg tracks goroutines owned by the engine itself (asynchronous
	// participant closes triggered by peer connection failures).
	wg sync.WaitGroup

	mu       sync.Mutex // guards the fields below
	closed   bool
	observer Observer
	rooms    map[string]*Room
	ended    map[string]time.Time // rooms an admin ended: refused until then (moderation.go)
}

// New validates cfg (after applying defaults to a copy) and opens the UDP mux
// socket. The caller must call Close.
func New(cfg Config) (*Engine, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.PublicIPs = append([]string(nil), cfg.PublicIPs...)
	log := cfg.Logger.With("component", "sfu", "node", cfg.NodeID)
	stats := newEngineStats()
	unhandled := &unhandledLog{
		stats: stats,
		limit: rate.NewLimiter(rate.Every(abuseLogInterval), 1),
		log: func(count uint64, last netip.AddrPort, sample string) {
			log.Warn("media port: datagrams not belonging to any session dropped", "count", count,
				"last_from", last.String(), "last_bytes", sample)
		},
	}
	tr, err := newTransport(&cfg, unhandled.packet)
	if err != nil {
		return nil, err
	}
	e := &Engine{
		cfg:   cfg,
		log:   log,
		tr:    tr,
		stats: stats,
		dyn:   newDynacast(),
		rooms: make(map[string]*Room),
		ended: make(map[string]time.Time),

		speakers: newSpeakerMonitor(),
		fanout:   newFanoutPool(cfg.FanoutWorkers, cfg.FanoutShardMin),
	}
	e.log.Info("sfu engine started", "udp", tr.conn.LocalAddr().String(), "ice_tcp", tr.tcpAddr() != nil)
	return e, nil
}

// Close closes every participant (they get EventClosed with
// ErrEngineClosed), which closes their producers, consumers and rooms, then
// closes the UDP mux and waits for every goroutine of the package. It is
// idempotent; later Join calls fail with ErrEngineClosed. Must not be called
// from an EventHandler or Observer.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	rooms := make([]*Room, 0, len(e.rooms))
	for _, r := range e.rooms {
		rooms = append(rooms, r)
	}
	e.mu.Unlock()

	for _, r := range rooms {
		r.closeLocals(ErrEngineClosed)
		// A room is removed with its last local participant; this closes
		// a room that had none left (remote producers only).
		r.closeIfEmpty()
	}
	e.wg.Wait()
	e.speakers.close()
	e.dyn.close()
	e.fanout.close()
	err := e.tr.close()
	e.log.Info("sfu engine closed")
	if err != nil {
		return fmt.Errorf("sfu: close udp mux: %w", err)
	}
	return nil
}

// NodeID returns Config.NodeID (after defaults).
func (e *Engine) NodeID() string { return e.cfg.NodeID }

// UDPAddr returns the actual bound address of the ICE UDP mux socket (tests
// use port 0).
func (e *Engine) UDPAddr() net.Addr { return e.tr.conn.LocalAddr() }

// TCPAddr returns the address of the ICE-TCP listener (Config.ICETCP), or
// nil when ICE-TCP is off.
func (e *Engine) TCPAddr() net.Addr { return e.tr.tcpAddr() }

// SetObserver sets the observer of local rooms and producers. Call once
// before the first Join; nil means no observer.
func (e *Engine) SetObserver(o Observer) {
	e.mu.Lock()
	e.observer = o
	e.mu.Unlock()
}

func (e *Engine) getObserver() Observer {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.observer
}

// Join adds a new local participant named p.Name to the room, creating the
// room (and reporting Observer.RoomOpened) on first join. The
// participant's goroutine immediately subscribes to every existing producer
// of others and, if there is at least one, sends an EventSubscriberOffer
// (possibly delivered before Join returns). Errors: ErrInvalidArgument (nil Events or empty
// room), ErrEngineClosed, ErrTooManyRooms, ErrRoomFull.
func (e *Engine) Join(room string, params JoinParams) (*Participant, error) {
	if params.Events == nil || room == "" {
		return nil, fmt.Errorf("sfu: join %q: %w: room name and Events are required", room, ErrInvalidArgument)
	}
	for {
		r, created, err := e.roomForJoin(room) // on success e.wg was incremented
		if err != nil {
			return nil, err
		}
		p, retry, err := e.joinRoom(r, created, params)
		e.wg.Done()
		if retry {
			continue // lost a race with the room's last participant leaving
		}
		return p, err
	}
}

// joinRoom adds a participant to r; retry reports a lost race with the room
// closing. Runs while Join holds a count on e.wg so that Engine.Close waits.
func (e *Engine) joinRoom(r *Room, created bool, params JoinParams) (p *Participant, retry bool, err error) {
	p, err = newParticipant(r, params)
	if err != nil {
		if created {
			r.closeIfEmpty()
		}
		return nil, false, fmt.Errorf("sfu: join %q: %w", r.name, err)
	}
	first, peers, producers, replaced, err := r.addParticipant(p)
	if err != nil {
		p.abort()
		if created {
			r.closeIfEmpty()
		}
		if errors.Is(err, ErrRoomClosed) {
			return nil, true, nil
		}
		return nil, false, fmt.Errorf("sfu: join %q: %w", r.name, err)
	}
	if first {
		if o := e.getObserver(); o != nil {
			o.RoomOpened(r)
		}
		close(r.openReported)
	} else {
		// Make sure RoomOpened was reported before this participant can
		// publish (ProducerAdded must follow RoomOpened).
		<-r.openReported
	}
	if o := e.getObserver(); o != nil && !p.hidden {
		o.ParticipantChanged(r, r.currentInfo(p), true)
	}
	for _, old := range replaced {
		old.log.Info("participant replaced by a new session of its identity", "by", p.id)
		old.closeWith(ErrReplaced)
	}
	p.start(peers, producers)
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed { // Engine.Close ran concurrently and may not have seen p
		p.closeWith(ErrEngineClosed)
		return nil, false, ErrEngineClosed
	}
	return p, false, nil
}

// roomForJoin returns the open room named name, creating it if needed, and
// increments e.wg for the caller. If a room of that name is closing it waits
// until it is gone. Lock order: Engine.mu before Room.mu.
func (e *Engine) roomForJoin(name string) (r *Room, created bool, err error) {
	for {
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			return nil, false, ErrEngineClosed
		}
		if e.roomEndedLocked(name) {
			e.mu.Unlock()
			return nil, false, fmt.Errorf("sfu: join %q: %w", name, ErrRoomEnded)
		}
		r = e.rooms[name]
		if r != nil {
			if r.isClosed() {
				e.mu.Unlock()
				<-r.closedReported
				continue
			}
			e.wg.Add(1)
			e.mu.Unlock()
			return r, false, nil
		}
		if len(e.rooms) >= e.cfg.MaxRooms {
			e.mu.Unlock()
			return nil, false, fmt.Errorf("sfu: join %q: %w", name, ErrTooManyRooms)
		}
		r = newRoom(e, name)
		e.rooms[name] = r
		e.wg.Add(1)
		e.mu.Unlock()
		return r, true, nil
	}
}

// removeRoom forgets r (if it is still the registered room of its name).
func (e *Engine) removeRoom(r *Room) {
	e.mu.Lock()
	if e.rooms[r.name] == r {
		delete(e.rooms, r.name)
	}
	e.mu.Unlock()
}

// Room returns the open room with that name, or nil when it does not exist.
func (e *Engine) Room(name string) *Room {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.rooms[name]
	if r == nil || r.isClosed() {
		return nil
	}
	return r
}

// Rooms returns a snapshot of the open rooms, sorted by name.
func (e *Engine) Rooms() []*Room {
	e.mu.Lock()
	rooms := make([]*Room, 0, len(e.rooms))
	for _, r := range e.rooms {
		if !r.isClosed() {
			rooms = append(rooms, r)
		}
	}
	e.mu.Unlock()
	sort.Slice(rooms, func(i, j int) bool { return rooms[i].name < rooms[j].name })
	return rooms
}

// NewPeerConnection returns a peer connection built exactly like participant
// PCs: own MediaEngine (Opus/VP8/H264), own interceptor registry with the
// default interceptors, the shared SettingEngine with the UDP mux. Used by
// cluster for node-to-node links. The caller owns and closes it, and must
// close it before Engine.Close.
func (e *Engine) NewPeerConnection() (*webrtc.PeerConnection, error) {
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return nil, ErrEngineClosed
	}
	return e.tr.newPeerConnection()
}

// goAsync runs f on an engine-owned goroutine unless the engine is closed
// (Engine.Close then does the work itself). Engine.Close waits for it.
func (e *Engine) goAsync(f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		f()
	}()
}

// newID returns a random URL-safe identifier (96 bits).
func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b[:])
}
