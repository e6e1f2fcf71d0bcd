package web

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/confab/confab/sfu"
	"github.com/confab/confab/templates"
	"github.com/confab/confab/web/access"
)

// WHIP (RFC 9725) ingest and WHEP playback.
//
// POST /rooms/{room}/whip takes an SDP offer and makes a participant of
// the room whose publisher connection answers it: an OBS, GStreamer or
// ffmpeg publisher is an ordinary engine participant (so other nodes see
// it too). POST /rooms/{room}/whep takes a recvonly offer and makes an
// sfu.Viewer. Both answer 201 with the SDP answer (all candidates), the
// session's resource URL in Location and an ETag; DELETE on the resource
// ends the session, PATCH trickles candidates or restarts ICE
// (whipice.go). A session also ends when
// its connection fails or never connects (Config.JoinTimeout), when an
// admin or the engine closes it, and when the node drains or closes.

// Content types of the WHIP and WHEP requests.
const (
	mimeSDP      = "application/sdp"
	mimeSDPFrag  = "application/trickle-ice-sdpfrag"
	maxSDPBody   = 64 << 10
	kindWHIP     = "whip"
	kindWHEP     = "whep"
	defaultWHIP  = "WHIP"
	defaultWHEP  = "WHEP viewer"
	bearerPrefix = "Bearer "
	// bearerChallenge is the WWW-Authenticate of a refused bearer token
	// (WHIP, WHEP and the cluster API).
	bearerChallenge = `Bearer realm="confab"`
)

// mediaSession is one WHIP publisher or WHEP viewer.
type mediaSession struct {
	id   string
	kind string // kindWHIP or kindWHEP
	room string

	part   *sfu.Participant // WHIP
	viewer *sfu.Viewer      // WHEP

	connected atomic.Bool // WHIP: the publisher connection connected

	// mu guards the ICE session (whipice.go) and serialises PATCHes.
	mu    sync.Mutex
	etag  string   // the entity-tag of the current ICE session
	ufrag string   // the client's ICE username fragment
	offer string   // the client's offer, with its current credentials
	used  []string // the client's earlier username fragments
}

// done is closed when the session's participant or viewer ended.
func (m *mediaSession) done() <-chan struct{} {
	if m.viewer != nil {
		return m.viewer.Done()
	}
	return m.part.Done()
}

// close ends the session and waits until it released everything.
func (m *mediaSession) close() {
	if m.viewer != nil {
		m.viewer.Close()
		return
	}
	m.part.Close()
}

// isConnected reports whether the session's connection came up.
func (m *mediaSession) isConnected() bool {
	if m.viewer != nil {
		return m.viewer.Connected()
	}
	return m.connected.Load()
}

// addCandidate adds a trickled client candidate.
func (m *mediaSession) addCandidate(c webrtc.ICECandidateInit) error {
	if m.viewer != nil {
		return m.viewer.AddICECandidate(c)
	}
	return m.part.AddICECandidate(sfu.TargetPublisher, c)
}

// HandleEvent implements sfu.EventHandler for a WHIP participant: it only
// notes that its connection came up; everything else (producers of
// others, dynacast, chat) has no receiver on a WHIP client and is dropped.
// It never blocks.
func (m *mediaSession) HandleEvent(ev sfu.Event) {
	if ev.Type == sfu.EventConnectionState && ev.Target == sfu.TargetPublisher && ev.State == "connected" {
		m.connected.Store(true)
	}
}

// mediaRoutes adds the WHIP and WHEP routes to e.
func (s *Server) mediaRoutes(e *echo.Echo) {
	for _, kind := range []string{kindWHIP, kindWHEP} {
		base := "/rooms/:room/" + kind
		e.POST(base, s.handleMediaOffer(kind))
		e.OPTIONS(base, s.handleMediaOptions(kind, false))
		e.DELETE(base+"/:id", s.handleMediaDelete(kind))
		e.PATCH(base+"/:id", s.handleMediaPatch(kind))
		e.OPTIONS(base+"/:id", s.handleMediaOptions(kind, true))
	}
}

// cors sets the CORS response headers for the request's Origin and
// reports whether the origin may use the endpoint. With token auth any
// origin may (the bearer token is the credential, and a page can only
// send one it holds: there are no cookies); without it only the origins
// the signaling WebSocket accepts (checkOrigin: this host, the cluster's
// nodes, Config.AllowedOrigins), so that a foreign page cannot publish
// into or watch a room of an open node through a visitor's browser.
// Requests without Origin (OBS, GStreamer, ffmpeg) are not browsers and
// always may.
func (s *Server) cors(c echo.Context) bool {
	r := c.Request()
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	h := c.Response().Header()
	h.Add(echo.HeaderVary, "Origin")
	if s.cfg.Auth != AuthToken {
		if err := s.checkOrigin(r); err != nil {
			s.log.Info("web: whip/whep origin refused", "origin", truncate(origin, 64), "err", err)
			return false
		}
		h.Set(echo.HeaderAccessControlAllowOrigin, origin)
	} else {
		h.Set(echo.HeaderAccessControlAllowOrigin, "*")
	}
	h.Set(echo.HeaderAccessControlExposeHeaders, "Location, ETag, Link, Accept-Patch")
	return true
}

// handleMediaOptions answers OPTIONS on a WHIP or WHEP endpoint or
// resource (CORS preflight). The endpoint lists PATCH too: WHIP clients
// read it there to learn that trickle ICE is supported.
func (s *Server) handleMediaOptions(kind string, resource bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !s.cors(c) {
			return c.NoContent(http.StatusForbidden)
		}
		methods := "POST, PATCH, DELETE, OPTIONS"
		if resource {
			methods = "PATCH, DELETE, OPTIONS"
		}
		h := c.Response().Header()
		h.Set(echo.HeaderAllow, methods)
		h.Set(echo.HeaderAccessControlAllowMethods, methods)
		h.Set(echo.HeaderAccessControlAllowHeaders, "Authorization, Content-Type, If-Match")
		h.Set(echo.HeaderAccessControlMaxAge, "600")
		if resource {
			h.Set("Accept-Patch", mimeSDPFrag)
		} else {
			h.Set("Accept-Post", mimeSDP)
		}
		return c.NoContent(http.StatusNoContent)
	}
}

// mediaError writes err as a JSON error with its HTTP status; 401 carries
// WWW-Authenticate.
func (s *Server) mediaError(c echo.Context, err error) error {
	status := httpStatus(err)
	if status == http.StatusUnauthorized {
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, bearerChallenge)
	}
	msg := err.Error()
	if status == http.StatusInternalServerError {
		s.log.Error("web: whip/whep failed", "err", err)
		msg = clientMessage(codeInternal, err)
	}
	return c.JSON(status, map[string]string{"error": mediaCode(err), "message": msg})
}

// bearer returns the request's bearer token ("" none).
func bearer(r *http.Request) string {
	token, _ := strings.CutPrefix(r.Header.Get(echo.HeaderAuthorization), bearerPrefix)
	return strings.TrimSpace(token)
}

// mediaClaims checks the bearer token (with token auth) for room; without
// token auth everyone may publish and subscribe.
func (s *Server) mediaClaims(r *http.Request, room string) (access.Claims, error) {
	return s.claims(bearer(r), room)
}

// readSDP reads a request body of content type want (at most maxSDPBody).
func readSDP(r *http.Request, want string) (string, error) {
	ct, _, err := mime.ParseMediaType(r.Header.Get(echo.HeaderContentType))
	if err != nil || !strings.EqualFold(ct, want) {
		return "", fmt.Errorf("%w: Content-Type must be %s", errMediaType, want)
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxSDPBody+1))
	if err != nil {
		return "", protoErrorf(errBadMessage, "read body: %v", err)
	}
	if len(b) > maxSDPBody {
		return "", protoErrorf(errBadMessage, "body over %d bytes", maxSDPBody)
	}
	return string(b), nil
}

// handleMediaOffer serves POST /rooms/:room/whip and /whep.
func (s *Server) handleMediaOffer(kind string) echo.HandlerFunc {
	return func(c echo.Context) error {
		room := c.Param("room")
		r := c.Request()
		if !s.cors(c) {
			return s.mediaError(c, protoErrorf(access.ErrForbidden, "origin not allowed"))
		}
		if !validRoomName(room) {
			return s.mediaError(c, protoErrorf(errBadMessage, "%s", invalidRoomMessage))
		}
		if !s.acquire() {
			return s.mediaError(c, sfu.ErrEngineClosed)
		}
		defer s.sessions.Done()
		if s.isDraining() {
			return s.mediaError(c, protoErrorf(errDraining, "node %s is shutting down", s.nodeID))
		}
		claims, err := s.mediaClaims(r, room)
		if err != nil {
			s.log.Info("web: "+kind+" refused", "room", room, "remote", c.RealIP(), "err", err)
			return s.mediaError(c, err)
		}
		body, err := readSDP(r, mimeSDP)
		if err != nil {
			return s.mediaError(c, err)
		}
		offer := webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: body}
		parsed, err := offer.Unmarshal()
		if err != nil {
			return s.mediaError(c, fmt.Errorf("%w: %w", sfu.ErrInvalidSDP, err))
		}
		etag := newETag()
		m := &mediaSession{id: newResourceID(), kind: kind, room: room, ufrag: offerUfrag(parsed), offer: body, etag: etag}
		var answer webrtc.SessionDescription
		if kind == kindWHIP {
			answer, err = s.startWHIP(c, m, claims, offer)
		} else {
			answer, err = s.startWHEP(c, m, claims, offer)
		}
		if err != nil {
			s.log.Info("web: "+kind+" failed", "room", room, "remote", c.RealIP(), "err", err)
			return s.mediaError(c, err)
		}
		if !s.trackMedia(m) {
			m.close()
			return s.mediaError(c, sfu.ErrEngineClosed)
		}
		h := c.Response().Header()
		h.Set(echo.HeaderLocation, "/rooms/"+room+"/"+kind+"/"+m.id)
		h.Set("ETag", etag)
		h.Set("Accept-Patch", mimeSDPFrag)
		h.Set(echo.HeaderCacheControl, "no-store")
		return c.Blob(http.StatusCreated, mimeSDP, []byte(answer.SDP))
	}
}

// startWHIP joins a WHIP publisher and answers its offer.
func (s *Server) startWHIP(c echo.Context, m *mediaSession, claims access.Claims, offer webrtc.SessionDescription) (webrtc.SessionDescription, error) {
	var none webrtc.SessionDescription
	if !claims.Grants.Publish {
		return none, protoErrorf(access.ErrForbidden, "whip: the access token does not allow publishing")
	}
	for _, src := range sendingSources(offer.SDP, nil) {
		if !claims.Grants.MayPublish(src) {
			return none, protoErrorf(access.ErrForbidden, "whip: the access token does not allow publishing %s", src)
		}
	}
	raw := claims.Name
	if raw == "" {
		raw = c.QueryParam("name")
	}
	if raw == "" {
		raw = c.Request().Header.Get("X-Confab-Name")
	}
	if raw == "" {
		raw = defaultWHIP
	}
	name, err := normalizeDisplayName(raw)
	if err != nil {
		return none, protoErrorf(errInvalidName, "invalid name: %v (1-64 characters, no control characters)", err)
	}
	p, err := s.engine.Join(m.room, sfu.JoinParams{
		Name: name, Events: m, Identity: claims.Identity(), Admin: claims.Grants.Admin, NoSubscribe: true,
		RestartsICE: true,
	})
	if err != nil {
		return none, err
	}
	m.part = p
	answer, err := p.Publish(offer)
	if err != nil {
		p.Close()
		return none, err
	}
	s.log.Info("web: whip publisher joined", "room", m.room, "participant", p.ID(), "name", name, "remote", c.RealIP())
	return answer, nil
}

// startWHEP makes a viewer and answers its offer.
func (s *Server) startWHEP(c echo.Context, m *mediaSession, claims access.Claims, offer webrtc.SessionDescription) (webrtc.SessionDescription, error) {
	var none webrtc.SessionDescription
	if !claims.Grants.Subscribe {
		return none, protoErrorf(access.ErrForbidden, "whep: the access token does not allow receiving media")
	}
	follow := strings.TrimSpace(c.QueryParam("participant"))
	if len(follow) > 128 {
		return none, protoErrorf(errBadMessage, "participant: at most 128 characters")
	}
	v, answer, err := s.engine.View(m.room, offer, sfu.ViewerParams{Name: defaultWHEP, Follow: follow})
	if err != nil {
		return none, err
	}
	m.viewer = v
	s.log.Info("web: whep viewer joined", "room", m.room, "participant", v.ID(), "follow", follow, "remote", c.RealIP())
	return answer, nil
}

// trackMedia registers m and starts its watcher, which forgets m when it
// ends and ends it if its connection does not come up within
// Config.JoinTimeout. False after Close.
func (s *Server) trackMedia(m *mediaSession) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.draining {
		return false
	}
	s.media[m.id] = m
	s.mediaWG.Add(1)
	go func() {
		defer s.mediaWG.Done()
		t := time.NewTimer(s.cfg.JoinTimeout)
		defer t.Stop()
		select {
		case <-m.done():
		case <-t.C:
			if !m.isConnected() {
				s.log.Info("web: "+m.kind+" session did not connect, ending it", "room", m.room, "resource", m.id)
				m.close()
			}
			<-m.done()
		}
		s.mu.Lock()
		delete(s.media, m.id)
		s.mu.Unlock()
	}()
	return true
}

// mediaSession returns the session of the request's resource URL,
// checking the token (with token auth) for its room.
func (s *Server) lookupMedia(c echo.Context, kind string) (*mediaSession, error) {
	s.mu.Lock()
	m := s.media[c.Param("id")]
	s.mu.Unlock()
	if m == nil || m.kind != kind || m.room != c.Param("room") {
		return nil, errNoResource
	}
	if _, err := s.mediaClaims(c.Request(), m.room); err != nil {
		return nil, err
	}
	return m, nil
}

// handleMediaDelete serves DELETE on a WHIP or WHEP resource: it ends the
// session (200) or answers 404.
func (s *Server) handleMediaDelete(kind string) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !s.cors(c) {
			return s.mediaError(c, protoErrorf(access.ErrForbidden, "origin not allowed"))
		}
		m, err := s.lookupMedia(c, kind)
		if err != nil {
			return s.mediaError(c, err)
		}
		m.close()
		s.log.Info("web: "+kind+" session ended by DELETE", "room", m.room, "resource", m.id)
		return c.NoContent(http.StatusOK)
	}
}

// handleMediaPatch serves PATCH on a WHIP or WHEP resource (RFC 9725,
// RFC 8840 fragments): trickled candidates are added (204); new ICE
// credentials restart ICE (200 with the node's new credentials and
// candidates, and a new ETag). A stale If-Match is 412, the credentials
// of an earlier ICE session 409.
func (s *Server) handleMediaPatch(kind string) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !s.cors(c) {
			return s.mediaError(c, protoErrorf(access.ErrForbidden, "origin not allowed"))
		}
		m, err := s.lookupMedia(c, kind)
		if err != nil {
			return s.mediaError(c, err)
		}
		body, err := readSDP(c.Request(), mimeSDPFrag)
		if err != nil {
			return s.mediaError(c, err)
		}
		frag, err := parseSDPFrag(body)
		if err != nil {
			return s.mediaError(c, err)
		}
		reply, etag, err := m.patch(frag, c.Request().Header.Get("If-Match"))
		if err != nil {
			if errors.Is(err, sfu.ErrInvalidSDP) {
				s.log.Info("web: "+kind+" ICE restart failed", "room", m.room, "resource", m.id, "err", err)
			}
			return s.mediaError(c, err)
		}
		if reply == "" {
			return c.NoContent(http.StatusNoContent)
		}
		s.log.Info("web: "+kind+" ICE restart", "room", m.room, "resource", m.id)
		h := c.Response().Header()
		h.Set("ETag", etag)
		h.Set(echo.HeaderCacheControl, "no-store")
		return c.Blob(http.StatusOK, mimeSDPFrag, []byte(reply))
	}
}

// offerUfrag returns the ICE username fragment of an offer (session level
// or its first media section).
func offerUfrag(sd *sdp.SessionDescription) string {
	if v, ok := sd.Attribute("ice-ufrag"); ok {
		return v
	}
	for _, md := range sd.MediaDescriptions {
		if v, ok := md.Attribute("ice-ufrag"); ok {
			return v
		}
	}
	return ""
}

// mediaSessions returns the number of open WHIP and WHEP sessions.
func (s *Server) mediaSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.media)
}

// endMedia ends every WHIP and WHEP session (Drain, Close) and waits for
// their watchers.
func (s *Server) endMedia() {
	s.mu.Lock()
	list := make([]*mediaSession, 0, len(s.media))
	for _, m := range s.media {
		list = append(list, m)
	}
	s.mu.Unlock()
	for _, m := range list {
		m.close()
	}
	if len(list) > 0 {
		s.log.Info("web: ended whip/whep sessions", "count", len(list))
	}
}

// newResourceID returns a random resource ID (96 bits, URL-safe): the
// resource URL is not guessable.
func newResourceID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// handleWatch serves GET /rooms/:room/watch: the page that plays the
// room's active speaker (or ?participant=) over WHEP.
func (s *Server) handleWatch(c echo.Context) error {
	room := c.Param("room")
	if !validRoomName(room) {
		return render(c, http.StatusBadRequest, templates.Error(templates.ErrorPage{
			Status: http.StatusBadRequest, Message: invalidRoomMessage,
		}))
	}
	return render(c, http.StatusOK, templates.Watch(templates.WatchPage{Room: room, NodeID: s.nodeID}))
}
