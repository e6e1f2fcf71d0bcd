// Package app is confab's composition root: it turns flags and environment
// into a Config (ParseConfig) and wires the media engine (sfu), the cluster
// membership (cluster) and the HTTP/signaling server (web) into one running
// node (Run). It is the only package besides cmd/confab that reads flags or
// the environment.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"time"

	"github.com/confab/confab/cluster"
	"github.com/confab/confab/sfu"
	"github.com/confab/confab/web"
	"github.com/confab/confab/web/access"
)

// ShutdownTimeout bounds how long Run waits for in-flight HTTP requests when
// its context is cancelled.
const ShutdownTimeout = 10 * time.Second

// drainPollInterval is how often a draining node checks whether its rooms
// are empty.
const drainPollInterval = 100 * time.Millisecond

// drainer is implemented by memberships that can leave the cluster's
// rotation before shutting down (stop attracting participants, e.g. by
// marking the node's Consul service critical). Checked at run time so that
// cluster may add it without app changing.
type drainer interface {
	Drain(ctx context.Context) error
}

// Run starts one confab node and blocks until ctx is cancelled or the HTTP
// server fails. It applies defaults to cfg and validates it, opens the ICE UDP
// socket and the HTTP listener, and logs "confab listening" with the actual
// addresses and the node id.
//
// When ctx is cancelled (SIGTERM) the node drains first: the membership's
// Drain hook runs if it has one, web.Server.Drain refuses new participants
// and tells every client to move to another node, and Run waits until the
// engine has no rooms left or cfg.DrainTimeout has passed. Then it shuts
// down. On return every component has been closed, in the order web, HTTP
// server, metrics listener (cfg.MetricsAddr), cluster membership, pprof
// listener, media engine; the returned error joins whatever went wrong (nil
// after a clean shutdown).
func Run(ctx context.Context, cfg Config) (err error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	level, _ := parseLogLevel(cfg.LogLevel)
	handler := slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})
	base := slog.New(handler)
	log := base.With("node", cfg.NodeID)

	engine, err := sfu.New(sfu.Config{
		NodeID:                 cfg.NodeID,
		UDPAddr:                cfg.UDPAddr(),
		PublicIPs:              cfg.PublicIPs,
		IncludeLoopback:        true,
		MaxParticipantsPerRoom: cfg.MaxParticipants,
		MaxRooms:               cfg.MaxRooms,
		NoAudioRED:             cfg.AudioRED == "off",
		FastWrite:              cfg.FastWrite == "on",
		Logger:                 base, // sfu scopes it with component and node itself

		MaxPublishBitrate: cfg.MaxPublishBitrate,
		ICETCP:            cfg.ICETCP == "on",
		FanoutWorkers:     cfg.FanoutWorkers,
		FanoutShardMin:    cfg.FanoutShardMin,
	})
	if err != nil {
		return fmt.Errorf("app: start media engine: %w", err)
	}
	// closers run in reverse order of registration when Run returns.
	var closers []func() error
	closers = append(closers, engine.Close)
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			err = errors.Join(err, closers[i]())
		}
	}()

	turnSrv, iceServers, err := startRelay(cfg, engine, log)
	if err != nil {
		return err
	}
	if turnSrv != nil {
		closers = append(closers, turnSrv.Close)
	}

	if cfg.PprofAddr != "" {
		stop, err := startPprof(cfg.PprofAddr, log.With("component", "pprof"))
		if err != nil {
			return err
		}
		closers = append(closers, stop)
	}

	membership, err := newMembership(cfg, engine, log)
	if err != nil {
		return err
	}
	engine.SetObserver(membership)
	closers = append(closers, membership.Close)
	if err := membership.Start(ctx); err != nil {
		return fmt.Errorf("app: start cluster membership: %w", err)
	}

	var place func(context.Context, web.PlaceRequest) (web.Placement, error)
	if cfg.Placement == PlacementOn {
		place = placeOf(membership)
	}
	var observeJoin func(time.Duration)
	var m *metrics
	if cfg.MetricsAddr != "" {
		m = newMetrics(engine, membership, version())
		stop, err := startMetrics(cfg.MetricsAddr, m, log.With("component", "metrics"))
		if err != nil {
			return err
		}
		closers = append(closers, stop)
		observeJoin = m.observeJoin
	}

	var keys access.KeySet
	if cfg.Auth == AuthToken {
		if keys, err = LoadAPIKeys(cfg.APIKeysFile); err != nil {
			return fmt.Errorf("app: %w", err)
		}
	}
	srv, err := web.New(web.Config{
		NodeID:         cfg.NodeID,
		AllowedOrigins: cfg.AllowedOrigins,
		MaxProtocol:    cfg.MaxProtocol,
		Auth:           cfg.Auth,
		Keys:           keys,
		Logger:         log.With("component", "web"),

		MaxConns:      cfg.MaxConns,
		MaxConnsPerIP: cfg.MaxConnsPerIP,
		JoinTimeout:   cfg.JoinTimeout,
	}, web.Deps{
		Engine:  engine,
		Status:  func(ctx context.Context) (any, error) { return membership.Status(ctx) },
		Ready:   membership.Ready,
		Peers:   peersOf(membership, cfg.NodeID),
		Members: membersOf(membership),
		Place:   place,
		Mounts:  map[string]http.Handler{"/cluster/": membership.Handler()},

		ObserveJoin: observeJoin,
		ICEServers:  iceServers,
	})
	if err != nil {
		return fmt.Errorf("app: create web server: %w", err)
	}
	if m != nil {
		m.reg.MustRegister(newAdmissionCollector(srv.AdmissionStats))
	}

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return errors.Join(fmt.Errorf("app: listen on --http-addr %s: %w", cfg.HTTPAddr, err), srv.Close())
	}
	httpSrv := newHTTPServer(srv.Handler(), defaultHTTPLimits(), log.With("component", "http"))
	serveDone := make(chan struct{})
	var serveErr error // written before serveDone is closed
	go func() {
		defer close(serveDone)
		serveErr = httpSrv.Serve(ln)
	}()
	// Registered last, so it runs first: signaling sessions and HTTP go away
	// before the membership and the engine are closed.
	closers = append(closers, func() error {
		err := shutdownHTTP(httpSrv, srv)
		<-serveDone
		return err
	})

	log.Info("confab listening",
		"http", ln.Addr().String(),
		"udp", engine.UDPAddr().String(),
		"cluster", clusterMode(cfg),
		"version", version())

	select {
	case <-ctx.Done():
	case <-serveDone:
		return fmt.Errorf("app: http server: %w", serveErr)
	}
	if !drain(membership, srv, engine, cfg.DrainTimeout, serveDone, log) {
		return fmt.Errorf("app: http server: %w", serveErr)
	}
	log.Info("confab shutting down")
	return nil
}

// drain is the planned-shutdown phase of Run: it runs the membership's Drain
// hook (if any), drains the web server (no new participants, clients told to
// move) and waits until the engine has no rooms or timeout has passed. It
// returns false if the HTTP server failed meanwhile (serveDone closed).
func drain(membership cluster.Membership, srv *web.Server, engine *sfu.Engine, timeout time.Duration,
	serveDone <-chan struct{}, log *slog.Logger) bool {
	start := time.Now()
	log.Info("confab draining", "rooms", len(engine.Rooms()), "timeout", timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if d, ok := membership.(drainer); ok {
		if err := d.Drain(ctx); err != nil {
			log.Warn("cluster drain failed; draining anyway", "err", err)
		}
	}
	srv.Drain("this node is shutting down")

	tick := time.NewTicker(drainPollInterval)
	defer tick.Stop()
	for {
		rooms := len(engine.Rooms())
		if rooms == 0 {
			log.Info("confab drained: no rooms left", "took", time.Since(start).Round(time.Millisecond))
			return true
		}
		select {
		case <-ctx.Done():
			log.Warn("drain timeout: closing the remaining rooms", "rooms", rooms, "timeout", timeout)
			return true
		case <-serveDone:
			return false
		case <-tick.C:
		}
	}
}

// membersOf returns the web.Deps.Members function of a membership: every
// node its Status lists with a URL, live or not, draining or not.
func membersOf(membership cluster.Membership) func(ctx context.Context) []web.Peer {
	return func(ctx context.Context) []web.Peer {
		st, err := membership.Status(ctx)
		if err != nil {
			return nil
		}
		members := make([]web.Peer, 0, len(st.Nodes))
		for _, n := range st.Nodes {
			if n.URL != "" {
				members = append(members, web.Peer{ID: n.ID, URL: n.URL})
			}
		}
		return members
	}
}

// peersOf returns the web.Deps.Peers function of a membership: the live,
// not draining nodes of its Status, with their advertised URLs, this node
// included.
// This node is left out when its URL is unknown (single-node mode); web
// then adds it with the URL the browser used.
func peersOf(membership cluster.Membership, nodeID string) func(ctx context.Context) []web.Peer {
	return func(ctx context.Context) []web.Peer {
		st, err := membership.Status(ctx)
		if err != nil {
			return nil
		}
		peers := make([]web.Peer, 0, len(st.Nodes))
		for _, n := range st.Nodes {
			if n.URL == "" || (n.ID != nodeID && (!n.Alive || n.Draining)) {
				continue
			}
			peers = append(peers, web.Peer{ID: n.ID, URL: n.URL, Load: n.Load})
		}
		return peers
	}
}

// placeOf returns the web.Deps.Place function of a membership, translating
// between web's and cluster's placement types (cluster.ErrNodeFull becomes
// web.ErrClusterFull).
func placeOf(membership cluster.Membership) func(ctx context.Context, req web.PlaceRequest) (web.Placement, error) {
	return func(ctx context.Context, req web.PlaceRequest) (web.Placement, error) {
		p, err := membership.PlaceWith(ctx, req.Room, cluster.PlaceOptions{Avoid: req.Avoid, Placed: req.Placed})
		if errors.Is(err, cluster.ErrNodeFull) {
			return web.Placement{}, fmt.Errorf("%w: %w", web.ErrClusterFull, err)
		}
		if err != nil {
			return web.Placement{}, err
		}
		return web.Placement{Node: web.Peer{ID: p.NodeID, URL: p.URL}, Local: p.Local, Reason: p.Reason, Full: p.Full}, nil
	}
}

// newMembership picks the single-node membership when no Consul address is
// configured, and the Consul-backed one otherwise.
func newMembership(cfg Config, engine *sfu.Engine, log *slog.Logger) (cluster.Membership, error) {
	if cfg.ConsulAddr == "" {
		local := cluster.NewLocal(engine)
		local.SetMaxParticipants(cfg.MaxParticipantsPerNode)
		return local, nil
	}
	token, consulTLS, err := cfg.consulAuth()
	if err != nil {
		return nil, err
	}
	node, err := cluster.New(cluster.Config{
		NodeID:       cfg.NodeID,
		ConsulAddr:   cfg.ConsulAddr,
		AdvertiseURL: cfg.AdvertiseAddr,
		Secret:       cfg.ClusterSecret,
		Version:      version(),
		Logger:       log.With("component", "cluster"),

		MaxParticipants: cfg.MaxParticipantsPerNode,
		ConsulToken:     token,
		ConsulTLS:       consulTLS,
		AllowedCIDRs:    cfg.ClusterCIDRs,
	}, engine)
	if err != nil {
		return nil, fmt.Errorf("app: create cluster node: %w", err)
	}
	return node, nil
}

// shutdownHTTP closes the signaling sessions first (hijacked WebSocket
// connections are invisible to http.Server.Shutdown), then waits up to
// ShutdownTimeout for in-flight requests.
func shutdownHTTP(httpSrv *http.Server, srv *web.Server) error {
	err := srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	if serr := httpSrv.Shutdown(ctx); serr != nil {
		err = errors.Join(err, fmt.Errorf("app: http shutdown: %w", serr))
	}
	return err
}

func clusterMode(cfg Config) string {
	if cfg.ConsulAddr == "" {
		return "single-node"
	}
	return "consul " + cfg.ConsulAddr
}

// version reports the module version or VCS revision the binary was built
// from, or "dev".
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if dirty {
			rev += "-dirty"
		}
		return rev
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	return "dev"
}
