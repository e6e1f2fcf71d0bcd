package app

import (
	"log/slog"
	"net/http"
	"time"
)

// httpLimits are the HTTP server's timeouts and size limits. They bound
// what a slow or malicious client can hold: a connection that trickles its
// headers (ReadHeaderTimeout), a request body (ReadTimeout, MaxBody), a
// response it reads slowly (WriteTimeout), an idle keep-alive connection
// (IdleTimeout). Signaling WebSockets are not affected: net/http clears a
// connection's deadlines when the handler hijacks it for the upgrade, and
// the session then applies its own limits (web.Config).
type httpLimits struct {
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	// WriteTimeout must exceed the slowest non-WebSocket handler: the
	// cluster control channel's "want" request may take three times its
	// request timeout (15 s by default).
	WriteTimeout   time.Duration
	IdleTimeout    time.Duration
	MaxHeaderBytes int
	// MaxBody bounds every request body (the cluster control channel
	// takes at most 1 MiB itself; the pages and signaling take none).
	MaxBody int64
}

// defaultHTTPLimits are the limits Run applies.
func defaultHTTPLimits() httpLimits {
	return httpLimits{
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		MaxBody:           2 << 20,
	}
}

// newHTTPServer returns the node's HTTP server for handler with limits
// applied (bodies over MaxBody fail to read with *http.MaxBytesError).
func newHTTPServer(handler http.Handler, limits httpLimits, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           http.MaxBytesHandler(handler, limits.MaxBody),
		ReadHeaderTimeout: limits.ReadHeaderTimeout,
		ReadTimeout:       limits.ReadTimeout,
		WriteTimeout:      limits.WriteTimeout,
		IdleTimeout:       limits.IdleTimeout,
		MaxHeaderBytes:    limits.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}
