// Package web is confab's HTTP layer: the lobby and room pages, the
// embedded browser assets, health/readiness/cluster-status endpoints, and
// the signaling WebSocket (/rooms/{room}/ws) that connects each browser to
// an sfu.Participant. The wire protocol is documented in docs/protocol.md.
//
// A Server is created by app with New, served through Handler, and closed
// with Close before the engine: Close ends every signaling session (each
// one closes its participant) and waits for all their goroutines. Before a
// planned shutdown app calls Drain: the node stops taking participants and
// tells its clients to move to another node.
package web

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"github.com/labstack/echo/v4"

	"github.com/confab/confab/sfu"
)

// Server serves confab's HTTP routes and signaling sessions. Its methods are
// safe for concurrent use.
type Server struct {
	cfg    Config
	deps   Deps
	engine *sfu.Engine
	nodeID string
	log    *slog.Logger
	echo   *echo.Echo
	assets *assets
	// admission counts signaling connections (admission.go).
	admission *admission

	ctx    context.Context // cancelled by Close; parent of every session
	cancel context.CancelFunc

	mu         sync.Mutex // guards the fields below and the sessions wait group's Add
	closed     bool
	draining   bool
	live       map[*session]struct{} // open signaling sessions
	knownHosts map[string]struct{}   // origin keys (see originKey) of every peer seen
	sessions   sync.WaitGroup        // one per signaling connection handler
	// media are the WHIP and WHEP sessions by resource ID (whip.go);
	// mediaWG counts their watcher goroutines.
	media   map[string]*mediaSession
	mediaWG sync.WaitGroup
}

// maxKnownHosts bounds Server.knownHosts.
const maxKnownHosts = 1024

// New validates cfg and deps and builds the routes. The caller owns deps
// (engine, status, mounts) and must call Close before closing the engine.
func New(cfg Config, deps Deps) (*Server, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := deps.validate(); err != nil {
		return nil, err
	}
	a, err := loadAssets()
	if err != nil {
		return nil, fmt.Errorf("web: load static assets: %w", err)
	}
	nodeID := cfg.NodeID
	if nodeID == "" {
		nodeID = deps.Engine.NodeID()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:    cfg,
		deps:   deps,
		engine: deps.Engine,
		nodeID: nodeID,
		log:    cfg.Logger,
		assets: a,
		ctx:    ctx,
		cancel: cancel,

		live:       map[*session]struct{}{},
		knownHosts: map[string]struct{}{},
		media:      map[string]*mediaSession{},
		admission:  newAdmission(&cfg),
	}
	s.echo = s.routes()
	return s, nil
}

// Handler returns the HTTP handler (the Echo instance) serving every route.
func (s *Server) Handler() http.Handler { return s.echo }

// Close refuses new signaling connections (503), closes every open session
// with StatusGoingAway (each closes its participant) and waits until all
// session goroutines have exited, then ends the WHIP and WHEP sessions
// and waits for them. It does not stop the HTTP server itself
// (app's http.Server does that). Idempotent; always returns nil.
//
// Close is normally quick; its worst case is bounded by a write stalled on
// an unresponsive client (Config.WriteTimeout) plus the WebSocket close
// handshake timeouts (5s to send the close frame, 5s to await the reply).
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.sessions.Wait()
	s.endMedia()
	s.mediaWG.Wait()
	return nil
}

// Drain prepares a planned shutdown. From now on the node takes no new
// participants (a "join" is answered with the error "draining" and the
// socket is closed with 1013 try again later), GET /readyz answers 503
// {"status":"draining"}, and every client gets a "move" message listing the
// other nodes (Deps.Peers minus this one) so that it rejoins its room
// elsewhere. Sessions stay open until their clients leave or Close ends
// them. message is a human-readable explanation sent along ("" for none).
//
// Called by app when it is asked to stop; safe for concurrent use.
// Idempotent: only the first call (before Close) has an effect. It calls
// Deps.Peers once, bounded by Config.PeersTimeout, and never blocks on
// clients (the messages are only queued).
func (s *Server) Drain(message string) {
	s.mu.Lock()
	if s.draining || s.closed {
		s.mu.Unlock()
		return
	}
	s.draining = true
	sessions := make([]*session, 0, len(s.live))
	for ss := range s.live {
		sessions = append(sessions, ss)
	}
	s.mu.Unlock()
	// WHIP and WHEP clients cannot be told to move: their sessions end
	// (publishers such as OBS reconnect, through the load balancer).
	s.endMedia()

	var nodes []Peer
	for _, p := range s.peers(s.ctx, "") {
		if p.ID != s.nodeID {
			nodes = append(nodes, p)
		}
	}
	if nodes == nil {
		nodes = []Peer{}
	}
	// One encoding per protocol version: each session gets its own.
	var moves [protocolLatest + 1][]byte
	for v := protocolV1; v <= protocolLatest; v++ {
		b, err := json.Marshal(moveMessage{
			V: v, Type: typeMove, Reason: moveReasonDraining, Message: message, Nodes: nodes,
		})
		if err != nil { // cannot happen with these types
			s.log.Error("web: drain: encode move", "err", err)
			return
		}
		moves[v] = b
	}
	for _, ss := range sessions {
		// Queued like a room event: a session that is joining gets it
		// right after "joined" (its version is set before the join
		// checks for draining, so it is the join's).
		ss.sendEvent(moves[ss.protocol()])
	}
	s.log.Info("web: draining: asked clients to move", "sessions", len(sessions), "nodes", len(nodes), "message", message)
}

// isDraining reports whether Drain was called.
func (s *Server) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// acquire registers a new signaling connection; false after Close.
func (s *Server) acquire() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.sessions.Add(1)
	return true
}

// track adds an open session to the set Drain reaches; untrack removes it.
func (s *Server) track(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.live[ss] = struct{}{}
}

func (s *Server) untrack(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.live, ss)
}

// routes builds the Echo instance.
func (s *Server) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.Use(s.recoverMiddleware, s.logMiddleware)

	e.GET("/", s.handleLobby, s.securityHeaders(false))
	e.GET("/rooms/:room", s.handleRoom, s.securityHeaders(true))
	e.GET("/rooms/", s.handleRoom, s.securityHeaders(false)) // empty room name: 400 page
	e.GET("/rooms/:room/ws", s.handleSignaling)
	e.GET("/rooms/:room/watch", s.handleWatch, s.securityHeaders(false))
	s.mediaRoutes(e)
	e.GET("/healthz", s.handleHealth)
	e.GET("/readyz", s.handleReady)
	e.GET("/api/cluster", s.handleCluster)
	e.GET("/static/*", s.handleStatic)
	e.HEAD("/static/*", s.handleStatic)

	for prefix, h := range s.deps.Mounts {
		wrapped := echo.WrapHandler(h)
		if strings.HasSuffix(prefix, "/") {
			e.Any(prefix+"*", wrapped)
		} else {
			e.Any(prefix, wrapped)
		}
	}
	return e
}

// reservedPath reports whether a mount path would shadow a built-in route.
func reservedPath(p string) bool {
	switch p {
	case "/", "/healthz", "/readyz", "/api/cluster":
		return true
	}
	return strings.HasPrefix(p, "/rooms/") || strings.HasPrefix(p, "/static/") ||
		p == "/rooms" || p == "/static"
}
