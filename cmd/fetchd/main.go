// Command fetchd is the outbound HTTP gateway daemon. It serves
// fetchd.v1.FetchService, the standard gRPC health service and server
// reflection, plus an admin HTTP port. See README.md for flags and defaults.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, stop, os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "fetchd:", err)
		os.Exit(1)
	}
}

// run parses args, starts fetchd and serves until ctx is done, then drains.
// stopSignals is called once shutdown begins, so a second signal ends the
// process at once.
func run(ctx context.Context, stopSignals func(), args []string, stderr io.Writer) error {
	m := NewMain()
	m.Logger = slog.New(slog.NewJSONHandler(stderr, nil))
	if err := m.ParseFlags(args, stderr); err != nil {
		return err
	}
	if err := m.Run(ctx); err != nil {
		m.Close()
		return err
	}
	var failed error
	select {
	case <-ctx.Done():
		m.Logger.Info("fetchd: shutting down", "drain_timeout", m.DrainTimeout)
	case failed = <-m.Err():
		m.Logger.Error("fetchd: a server stopped", "error", failed)
	}
	stopSignals()
	return errors.Join(failed, m.Close())
}
