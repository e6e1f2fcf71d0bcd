// Command confab runs one node of the confab video-conferencing server.
//
// `confab token ...` instead signs an access token for a node started with
// --auth token (`confab token --help`).
//
// Every flag --foo-bar can also be set through the environment variable
// CONFAB_FOO_BAR; run `confab --help` for the list. On SIGINT or SIGTERM the
// node drains (tells its clients to move to other nodes, waits up to
// --drain-timeout for its rooms to empty) and then stops gracefully; a
// second signal makes it exit at once. Exit status: 0 after a clean shutdown
// or --help, 2 for invalid flags, 1 when the server fails or is stopped by a
// second signal.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/confab/confab/app"
)

func main() {
	os.Exit(run())
}

// run is main without os.Exit, so deferred calls run before exiting.
func run() int {
	if len(os.Args) > 1 && os.Args[1] == "token" {
		return app.TokenCommand(os.Args[2:], os.Stdout, os.Stderr, time.Now())
	}
	cfg, err := app.ParseConfig(os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		app.Usage(os.Stdout)
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "confab: %v\n", err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	defer close(done)
	// Owned by run, ends with it (done) at the latest: the first signal
	// starts the graceful shutdown, a second one exits immediately.
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-done:
			return
		}
		select {
		case sig := <-sigs:
			fmt.Fprintf(os.Stderr, "confab: second signal (%v), exiting immediately\n", sig)
			os.Exit(1)
		case <-done:
		}
	}()
	if err := app.Run(ctx, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "confab: %v\n", err)
		return 1
	}
	return 0
}
