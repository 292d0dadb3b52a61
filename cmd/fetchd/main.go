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

	"github.com/fetchd/fetchd/internal/calllog"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "token" {
		if err := tokenCommand(os.Args[2:], os.Stdin, os.Stdout, os.Stderr); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				os.Exit(0)
			}
			fmt.Fprintln(os.Stderr, "fetchd:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	if err := run(ctx, stop, hup, os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "fetchd:", err)
		os.Exit(1)
	}
}

// run parses args, starts fetchd and serves until ctx is done, then drains.
// stopSignals is called once shutdown begins, so a second signal ends the
// process at once. A value on reload reloads the policy file.
func run(ctx context.Context, stopSignals func(), reload <-chan os.Signal, args []string, stderr io.Writer) error {
	m := NewMain()
	sink := newLogSink(stderr, callLogBatch, callLogFlush)
	defer sink.Flush()
	m.Logger = slog.New(slog.NewJSONHandler(sink.Direct(), nil))
	m.CallLogger = slog.New(calllog.NewJSONHandler(sink.Batched(), nil))
	if err := m.ParseFlags(args, stderr); err != nil {
		return err
	}
	if err := m.Run(ctx); err != nil {
		m.Close()
		return err
	}
	if tuner := startGCTuner(m, os.Getenv); tuner != nil {
		defer tuner.stop()
	}
	var failed error
serve:
	for {
		select {
		case <-reload:
			m.Reload() // logs its own outcome; a bad file keeps the running policy
		case <-ctx.Done():
			m.Logger.Info("fetchd: shutting down", "drain_timeout", m.DrainTimeout)
			break serve
		case failed = <-m.Err():
			m.Logger.Error("fetchd: a server stopped", "error", failed)
			break serve
		}
	}
	stopSignals()
	return errors.Join(failed, m.Close())
}

// startGCTuner starts the heap-goal floor of --gc-min-heap-mib, unless it is
// 0 or the environment sets GOGC or GOMEMLIMIT (the operator's own choice
// wins), and logs which.
func startGCTuner(m *Main, getenv func(string) string) *gcTuner {
	for _, v := range []string{"GOGC", "GOMEMLIMIT"} {
		if getenv(v) != "" {
			m.Logger.Info("fetchd: garbage collector left as the environment sets it", v, getenv(v))
			return nil
		}
	}
	if m.GCMinHeapMiB == 0 {
		return nil
	}
	t := newGCTuner(uint64(m.GCMinHeapMiB) << 20)
	t.start()
	m.Logger.Info("fetchd: garbage collector goal floor", "min_heap_mib", m.GCMinHeapMiB)
	return t
}
