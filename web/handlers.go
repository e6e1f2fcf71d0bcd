package web

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/a-h/templ"
	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"

	"github.com/confab/confab/templates"
	"github.com/confab/confab/web/access"
)

// invalidRoomMessage is the body of the 400 page for a bad room name.
const invalidRoomMessage = "invalid room name: " + templates.RoomNameRule

// render writes a templ component as an HTML response.
func render(c echo.Context, status int, comp templ.Component) error {
	c.Response().Header().Set(echo.HeaderContentType, echo.MIMETextHTMLCharsetUTF8)
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	c.Response().WriteHeader(status)
	return comp.Render(c.Request().Context(), c.Response())
}

// handleLobby serves GET /: the lobby form. The form submits to GET
// /?room=...&name=..., which redirects to the room page (so the lobby needs
// no JavaScript); an invalid room name re-renders the form with a 400.
func (s *Server) handleLobby(c echo.Context) error {
	q := c.Request().URL.Query()
	if !q.Has("room") {
		return render(c, http.StatusOK, templates.Lobby(templates.LobbyPage{}))
	}
	room := strings.TrimSpace(q.Get("room"))
	name := q.Get("name")
	if !validRoomName(room) {
		return render(c, http.StatusBadRequest, templates.Lobby(templates.LobbyPage{
			Room: room, Name: name, Error: invalidRoomMessage,
		}))
	}
	target := "/rooms/" + room
	if n := strings.TrimSpace(name); n != "" {
		target += "?" + url.Values{"name": {n}}.Encode()
	}
	return c.Redirect(http.StatusSeeOther, target)
}

// handleRoom serves GET /rooms/:room. A valid ?name= joins at once;
// without one (or with an invalid one) the page asks for a name. With
// token auth the page needs a valid ?token= for the room (else 401/403
// with the reason); a name in the token is used as is.
func (s *Server) handleRoom(c echo.Context) error {
	room := c.Param("room")
	if !validRoomName(room) {
		return render(c, http.StatusBadRequest, templates.Error(templates.ErrorPage{
			Status: http.StatusBadRequest, Message: invalidRoomMessage,
		}))
	}
	page := templates.RoomPage{Room: room, NodeID: s.nodeID}
	if s.cfg.Auth == AuthToken {
		claims, err := access.Verify(s.cfg.Keys, c.QueryParam("token"), room, s.cfg.now())
		if err != nil {
			s.log.Info("web: room page refused", "room", room, "remote", c.RealIP(), "err", err)
			status := accessStatus(err)
			return render(c, status, templates.Error(templates.ErrorPage{Status: status, Message: accessText(err)}))
		}
		page.Token = c.QueryParam("token") // kept by the name form
		if name, err := normalizeDisplayName(claims.Name); err == nil {
			page.Name = name
			return render(c, http.StatusOK, templates.Room(page))
		}
	}
	if raw := c.QueryParam("name"); raw != "" {
		name, err := normalizeDisplayName(raw)
		if err != nil {
			page.NameError = "Please choose another name: " + err.Error() + "."
		} else {
			page.Name = name
		}
	}
	return render(c, http.StatusOK, templates.Room(page))
}

// handleSignaling serves GET /rooms/:room/ws: it checks the Origin (see
// checkOrigin; 403 when foreign), upgrades to a WebSocket and runs a
// signaling session until the connection ends.
func (s *Server) handleSignaling(c echo.Context) error {
	room := c.Param("room")
	if !validRoomName(room) {
		return c.String(http.StatusBadRequest, invalidRoomMessage)
	}
	if !s.acquire() {
		return c.String(http.StatusServiceUnavailable, "server shutting down")
	}
	defer s.sessions.Done()

	r := c.Request()
	if err := s.checkOrigin(r); err != nil {
		s.log.Info("signaling: upgrade refused", "room", room, "origin", r.Header.Get("Origin"), "err", err)
		return c.String(http.StatusForbidden, "forbidden: "+err.Error())
	}
	release, ok := s.admit(c)
	if !ok {
		return nil
	}
	defer release()
	conn, err := websocket.Accept(c.Response(), r, &websocket.AcceptOptions{
		// checkOrigin above is the (dynamic) origin policy.
		InsecureSkipVerify: true,
	})
	if err != nil {
		// Accept has already written the HTTP error (400 for a bad
		// handshake).
		s.log.Info("signaling: upgrade failed", "room", room, "err", err)
		return nil
	}
	log := s.log.With("room", room, "remote", c.RealIP())
	log.Debug("signaling: connected")
	ss := newSession(s, conn, room, requestURL(c.Scheme(), r.Host), log)
	s.track(ss)
	defer s.untrack(ss)
	stopDeadline := ss.startJoinDeadline(s.cfg.JoinTimeout)
	defer stopDeadline()
	ss.run()
	return nil
}

// handleHealth serves GET /healthz: the process is up.
func (s *Server) handleHealth(c echo.Context) error {
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.String(http.StatusOK, "ok")
}

// readyStatus is the JSON body of GET /readyz.
type readyStatus struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// handleReady serves GET /readyz:
//   - 200 {"status":"ready"} when serving normally;
//   - 200 {"status":"degraded","reason":...} when Deps.Ready reports an
//     error (e.g. Consul is unreachable): the node still serves its rooms
//     and takes participants, so load balancers keep sending traffic;
//   - 503 {"status":"draining"} after Drain;
//   - 503 {"status":"shutting-down"} after Close.
func (s *Server) handleReady(c echo.Context) error {
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	switch {
	case s.isDraining():
		return c.JSON(http.StatusServiceUnavailable, readyStatus{Status: "draining"})
	case s.ctx.Err() != nil:
		return c.JSON(http.StatusServiceUnavailable, readyStatus{Status: "shutting-down"})
	}
	if s.deps.Ready != nil {
		if err := s.deps.Ready(); err != nil {
			return c.JSON(http.StatusOK, readyStatus{Status: "degraded", Reason: err.Error()})
		}
	}
	return c.JSON(http.StatusOK, readyStatus{Status: "ready"})
}

// handleCluster serves GET /api/cluster: the Deps.Status document as JSON.
//
// With token auth it needs an admin token for every room (access.AnyRoom)
// as "Authorization: Bearer TOKEN"; others get 401 or 403 and nothing
// about rooms.
func (s *Server) handleCluster(c echo.Context) error {
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	if s.cfg.Auth == AuthToken {
		if _, err := access.VerifyAdmin(s.cfg.Keys, bearer(c.Request()), s.cfg.now()); err != nil {
			s.log.Info("web: cluster API refused", "remote", c.RealIP(), "err", err)
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, bearerChallenge)
			return c.JSON(accessStatus(err), map[string]string{"error": wireCode(err), "message": accessText(err)})
		}
	}
	doc, err := s.deps.Status(c.Request().Context())
	if err != nil {
		s.log.Warn("web: cluster status failed", "err", err)
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
	}
	return c.JSON(http.StatusOK, doc)
}

// securityHeaders adds a strict CSP and friends to HTML pages. The pages
// load only same-origin scripts/styles; they may open WebSockets to this
// host and, on room pages (withPeers), to every node of the cluster known
// when the page is served, for failover.
func (s *Server) securityHeaders(withPeers bool) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			sources := []string{"'self'"}
			host := c.Request().Host
			if safeHost(host) {
				sources = append(sources, "ws://"+host, "wss://"+host)
			}
			if withPeers && s.deps.Peers != nil {
				for _, p := range s.peers(c.Request().Context(), "") {
					if src := wsSource(p.URL); src != "" && !slices.Contains(sources, src) {
						sources = append(sources, src)
					}
				}
			}
			h := c.Response().Header()
			h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; "+
				"img-src 'self' data:; media-src 'self' blob: mediastream:; connect-src "+strings.Join(sources, " ")+"; "+
				"base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Referrer-Policy", "same-origin")
			h.Set("X-Frame-Options", "DENY")
			return next(c)
		}
	}
}

// safeHost reports whether host (from the Host header) only has characters
// of a host[:port], so it can be echoed into a header.
func safeHost(host string) bool {
	if host == "" || len(host) > 255 {
		return false
	}
	for _, r := range host {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune(".-:[]", r):
		default:
			return false
		}
	}
	return true
}

// recoverMiddleware turns a panic in a handler into a 500 (logged once
// here) instead of killing the connection's goroutine silently.
func (s *Server) recoverMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				s.log.Error("web: panic in handler", "path", c.Request().URL.Path, "panic", r)
				err = echo.NewHTTPError(http.StatusInternalServerError)
			}
		}()
		return next(c)
	}
}

// logMiddleware logs every request at debug level.
func (s *Server) logMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		status := c.Response().Status
		var he *echo.HTTPError
		if errors.As(err, &he) {
			status = he.Code
		}
		s.log.Debug("web: request", "method", c.Request().Method, "path", c.Request().URL.Path,
			"status", status, "duration", time.Since(start))
		return err
	}
}
