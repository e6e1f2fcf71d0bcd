package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// startSideServer serves h on its own listener at addr, apart from the
// public HTTP server (the pprof and metrics listeners). flag names the
// command-line flag in errors. The returned stop function shuts the server
// down and waits for its goroutine; Run registers it as a closer.
func startSideServer(flag, addr string, h http.Handler, log *slog.Logger) (stop func() error, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("app: listen on --%s %s: %w", flag, addr, err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("server stopped", "err", err)
		}
	}()
	log.Info("listening", "addr", ln.Addr().String())
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := srv.Shutdown(ctx)
		if err != nil {
			err = errors.Join(err, srv.Close())
		}
		<-done
		if err != nil {
			return fmt.Errorf("app: stop --%s server: %w", flag, err)
		}
		return nil
	}, nil
}
