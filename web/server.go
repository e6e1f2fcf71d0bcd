// Package web is confab's HTTP layer: the lobby and room pages, the
// embedded browser assets, health/readiness/cluster-status endpoints, and
// the signaling WebSocket (/rooms/{room}/ws) that connects each browser to
// an sfu.Participant. The wire protocol is documented in docs/protocol.md.
//
// A Server is created by app with New, served through Handler, and closed
// with Close before the engine: Close ends every signaling session (each
// one closes its participant) and waits for all their goroutines.
package web

import (
	"context"
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

	ctx    context.Context // cancelled by Close; parent of every session
	cancel context.CancelFunc

	mu       sync.Mutex // guards closed and the sessions wait group's Add
	closed   bool
	sessions sync.WaitGroup // one per signaling connection handler
}

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
	}
	s.echo = s.routes()
	return s, nil
}

// Handler returns the HTTP handler (the Echo instance) serving every route.
func (s *Server) Handler() http.Handler { return s.echo }

// Close refuses new signaling connections (503), closes every open session
// with StatusGoingAway (each closes its participant) and waits until all
// session goroutines have exited. It does not stop the HTTP server itself
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
	return nil
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

// routes builds the Echo instance.
func (s *Server) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.Use(s.recoverMiddleware, s.logMiddleware)

	e.GET("/", s.handleLobby, securityHeaders)
	e.GET("/rooms/:room", s.handleRoom, securityHeaders)
	e.GET("/rooms/", s.handleRoom, securityHeaders) // empty room name: 400 page
	e.GET("/rooms/:room/ws", s.handleSignaling)
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
