// Command confab runs one node of the confab video-conferencing server.
//
// Every flag --foo-bar can also be set through the environment variable
// CONFAB_FOO_BAR; run `confab --help` for the list. The process stops
// gracefully on SIGINT or SIGTERM. Exit status: 0 after a clean shutdown or
// --help, 2 for invalid flags, 1 when the server fails.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/confab/confab/app"
)

func main() {
	os.Exit(run())
}

// run is main without os.Exit, so deferred calls run before exiting.
func run() int {
	cfg, err := app.ParseConfig(os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		app.Usage(os.Stdout)
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "confab: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.Run(ctx, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "confab: %v\n", err)
		return 1
	}
	return 0
}
