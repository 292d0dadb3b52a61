package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"
)

// abCommand is `benchcompare ab -before BIN -after BIN`: the throughput part
// of the comparison for two fetchd builds and the bare forwarder, run in
// alternating rounds (before, after, forwarder at every level in each
// round), so that the machine's drift over minutes falls on all three
// alike. It prints the medians over the rounds of req/s and of fetchd's CPU
// per request, and the ratios. One run of a noisy, shared machine can move
// by 10%; a change worth claiming shows in the medians of several rounds.
func abCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	before := fs.String("before", "", "the fetchd binary before the change (required)")
	after := fs.String("after", "", "the fetchd binary after the change (required)")
	rounds := fs.Int("rounds", 5, "rounds, each running before, after and the forwarder at every level")
	concurrency := fs.String("concurrency", "1,16,64", "closed-loop concurrency levels, comma-separated")
	fs.DurationVar(&cfg.Duration, "duration", 4*time.Second, "measured time per build, level and round")
	fs.DurationVar(&cfg.Warmup, "warmup", time.Second, "uncounted warm-up before each measurement")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *before == "" || *after == "" {
		return errors.New("-before and -after: both fetchd binaries are required")
	}
	if *rounds < 1 || cfg.Duration <= 0 || cfg.Warmup < 0 {
		return errors.New("-rounds and -duration must be positive, -warmup not negative")
	}
	var err error
	if cfg.Concurrency, err = parseInts(*concurrency); err != nil {
		return fmt.Errorf("-concurrency: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	up, err := startUpstream()
	if err != nil {
		return err
	}
	defer up.Close()
	dir, err := os.MkdirTemp("", "benchcompare-ab-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	arms := []struct{ name, gateway, fetchd string }{
		{"before", gwFetchd, *before},
		{"after", gwFetchd, *after},
		{gwForwarder, gwForwarder, ""},
	}
	runs := make([][][]level, len(arms)) // arm, round, level
	errored := false
	for r := range *rounds {
		for i, arm := range arms {
			s := &setup{upstream: up, dir: dir, fetchd: arm.fetchd, self: []string{self}}
			c := cfg
			c.Gateways = []string{arm.gateway}
			var res results
			if err := throughput(ctx, s, c, &res, io.Discard); err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, arm.name, err)
			}
			for _, l := range res.Throughput[0].Levels {
				if l.Errors > 0 {
					errored = true
					fmt.Fprintf(stderr, "round %d, %s, c=%d: %d errors%s\n", r+1, arm.name, l.Concurrency, l.Errors, firstErr(l.FirstErr))
				}
			}
			runs[i] = append(runs[i], res.Throughput[0].Levels)
		}
		fmt.Fprintf(stderr, "ab: round %d of %d done\n", r+1, *rounds)
	}

	fmt.Fprintf(stdout, "Medians of %d alternating rounds, %s per build and level after %s of warm-up\n", *rounds, cfg.Duration, cfg.Warmup)
	fmt.Fprintf(stdout, "%11s  %13s  %12s  %15s  %16s  %15s  %14s  %13s\n",
		"concurrency", "before req/s", "after req/s", "forwarder req/s", "before / fwd", "after / fwd", "after / before", "CPU/req b / a")
	for li, c := range cfg.Concurrency {
		rps := make([]float64, len(arms))
		cpu := make([]time.Duration, len(arms))
		for i := range arms {
			rps[i] = median(runs[i], func(l level) float64 { return l.RPS }, li)
			cpu[i] = time.Duration(median(runs[i], func(l level) float64 { return float64(l.CPUPerReq) }, li))
		}
		fmt.Fprintf(stdout, "%11d  %13.0f  %12.0f  %15.0f  %16.2f  %15.2f  %14.2f  %6s / %s\n",
			c, rps[0], rps[1], rps[2], rps[0]/rps[2], rps[1]/rps[2], rps[1]/rps[0], fmtDur(cpu[0]), fmtDur(cpu[1]))
	}
	if errored {
		return errCounted
	}
	return nil
}

// median is the median over rounds of f of each round's level li.
func median(rounds [][]level, f func(level) float64, li int) float64 {
	vs := make([]float64, 0, len(rounds))
	for _, levels := range rounds {
		vs = append(vs, f(levels[li]))
	}
	slices.Sort(vs)
	if n := len(vs); n%2 == 1 {
		return vs[n/2]
	} else {
		return (vs[n/2-1] + vs[n/2]) / 2
	}
}
