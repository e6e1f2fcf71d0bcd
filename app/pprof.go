package app

import (
	"log/slog"
	"net/http"
	"net/http/pprof"
)

// startPprof serves the Go runtime profiles (net/http/pprof) on their own
// listener at addr (--pprof-addr, a loopback address), apart from the public
// HTTP server, so that they are never reachable through the node's public
// address by accident. /debug/pprof/cmdline is not served (404).
// The returned stop function shuts the listener down and waits for its
// goroutine; Run registers it as a closer.
func startPprof(addr string, log *slog.Logger) (stop func() error, err error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	// Not the command line: it may hold what must not leak (secrets
	// are refused there, but other flags and paths are still no one's
	// business).
	mux.Handle("/debug/pprof/cmdline", http.NotFoundHandler())
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return startSideServer("pprof-addr", addr, mux, log)
}
