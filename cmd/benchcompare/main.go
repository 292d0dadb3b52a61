// Command benchcompare measures fetchd against a direct call, a bare gRPC
// forwarder and haproxy in one run on one machine: throughput, latency and
// gateway CPU per request at several concurrencies, memory with thousands
// of requests in flight, and upstream requests per call during an outage.
// It prints the tables and writes BENCHMARKS.md and a PNG chart.
//
//	benchcompare -fetchd PATH [-duration 10s] [-out BENCHMARKS.md] [-chart docs/bench-compare.png]
//	benchcompare forwarder -listen ADDR   (the bare gateway, run by the comparison itself)
//	benchcompare ab -before BIN -after BIN [-rounds 5]   (two fetchd builds in alternating rounds)
//
// scripts/bench-compare builds both binaries and runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "forwarder" {
		if err := forwarderCommand(os.Args[2:], os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "benchcompare forwarder:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] == "ab" {
		if err := abCommand(ctx, os.Args[2:], os.Stdout, os.Stderr); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				os.Exit(0)
			}
			fmt.Fprintln(os.Stderr, "benchcompare ab:", err)
			os.Exit(1)
		}
		return
	}
	if _, err := compare(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "benchcompare:", err)
		os.Exit(1)
	}
}

// compare parses args, runs the comparison, prints the tables to stdout
// and writes the report and the chart; progress goes to stderr. The
// results are returned with errCounted too.
func compare(ctx context.Context, args []string, stdout, stderr io.Writer) (*results, error) {
	fs := flag.NewFlagSet("benchcompare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg         config
		gateways    = fs.String("gateways", "direct,fetchd,forwarder,haproxy", "gateways to compare, comma-separated")
		concurrency = fs.String("concurrency", "1,16,64", "closed-loop concurrency levels, comma-separated")
		out         = fs.String("out", "BENCHMARKS.md", "the report to write")
		chartPath   = fs.String("chart", "docs/bench-compare.png", "the PNG chart to write")
	)
	fs.StringVar(&cfg.Fetchd, "fetchd", "", "the fetchd binary (required when fetchd is compared)")
	fs.StringVar(&cfg.Haproxy, "haproxy", "haproxy", "the haproxy binary")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured time per gateway and concurrency")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "uncounted warm-up before each measurement")
	fs.IntVar(&cfg.InFlight, "inflight", 5000, "requests held in flight for the memory measurement")
	fs.DurationVar(&cfg.InFlightWait, "inflight-wait", 60*time.Second, "how long to wait for every held request to reach the upstream")
	fs.IntVar(&cfg.OutageCalls, "outage-calls", 2000, "calls per gateway while the upstream answers 503")
	fs.IntVar(&cfg.OutageConcurrency, "outage-concurrency", 16, "concurrency of the outage calls")
	fs.StringVar(&cfg.Command, "command", "", "the command line to record in the report (default: this one)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if cfg.Gateways, err = parseGateways(*gateways); err != nil {
		return nil, err
	}
	if cfg.Concurrency, err = parseInts(*concurrency); err != nil {
		return nil, fmt.Errorf("-concurrency: %w", err)
	}
	if cfg.Duration <= 0 || cfg.Warmup < 0 || cfg.InFlight < 1 || cfg.OutageCalls < 1 || cfg.OutageConcurrency < 1 {
		return nil, errors.New("-duration, -inflight, -outage-calls and -outage-concurrency must be positive, -warmup not negative")
	}
	if cfg.Command == "" {
		cfg.Command = "benchcompare " + strings.Join(args, " ")
	}
	for _, g := range cfg.Gateways {
		switch g {
		case gwFetchd:
			if cfg.Fetchd == "" {
				return nil, errors.New("-fetchd: the fetchd binary is required (go build -o DIR/fetchd ./cmd/fetchd)")
			}
		case gwHaproxy:
			if _, err := exec.LookPath(cfg.Haproxy); err != nil {
				return nil, fmt.Errorf("-haproxy: %w (install haproxy, or leave it out of -gateways)", err)
			}
		}
	}
	// Direct and haproxy hold one connection per request on both sides in
	// this process.
	if need := 2*cfg.InFlight + 512; uint64(need) > fileLimit() {
		return nil, fmt.Errorf("-inflight %d needs about %d open files and the limit is %d: raise it (ulimit -n) or lower -inflight", cfg.InFlight, need, fileLimit())
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cfg.Self = []string{self}

	res, err := run(ctx, cfg, stderr)
	if err != nil {
		return nil, err
	}
	res.printText(stdout)
	rel, err := filepath.Rel(filepath.Dir(*out), *chartPath)
	if err != nil {
		rel = *chartPath
	}
	if err := os.WriteFile(*out, []byte(res.markdown(filepath.ToSlash(rel))), 0o644); err != nil {
		return nil, err
	}
	if err := writeChart(*chartPath, res); err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "\nwrote %s and %s\n", *out, *chartPath)
	if res.errorsCounted() {
		return res, errCounted
	}
	return res, nil
}

func parseGateways(s string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for g := range strings.SplitSeq(s, ",") {
		g = strings.TrimSpace(g)
		switch g {
		case gwDirect, gwFetchd, gwForwarder, gwHaproxy:
		default:
			return nil, fmt.Errorf("-gateways: unknown gateway %q (want %s, %s, %s or %s)", g, gwDirect, gwFetchd, gwForwarder, gwHaproxy)
		}
		if !seen[g] {
			seen[g] = true
			out = append(out, g)
		}
	}
	return out, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive whole number", f)
		}
		out = append(out, n)
	}
	return out, nil
}
