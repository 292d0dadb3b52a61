package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/status"
)

// config is one comparison run.
type config struct {
	Gateways          []string
	Concurrency       []int
	Duration, Warmup  time.Duration
	InFlight          int
	InFlightWait      time.Duration
	OutageCalls       int
	OutageConcurrency int
	Fetchd, Haproxy   string   // binaries
	Self              []string // runs `benchcompare forwarder` when given its arguments
	Command           string   // the command line, for the report
}

// results is everything a run measured, in the order of cfg.Gateways.
type results struct {
	Machine    machine
	Config     config
	MaxConn    int // haproxy's maxconn, fitted to the open-file limit
	Throughput []gatewayLevels
	Memory     []memResult
	Outage     []outageResult
}

type gatewayLevels struct {
	Name   string
	Levels []level // in the order of Config.Concurrency
}

// memResult is a gateway holding InFlight slow requests open upstream.
type memResult struct {
	Name       string
	HasProcess bool
	Idle       memory        // after start and one call
	Held       memory        // with the requests in flight
	Arrived    int           // requests the upstream saw arrive before Held was read
	Reached    time.Duration // how long until they had arrived
	OK         int           // answered 200 after the release
	Errors     int
	FirstErr   string
}

// outageResult is a gateway's calls while the upstream answers 503 to
// everything.
type outageResult struct {
	Name       string
	Calls      int
	Upstream   int64 // requests the upstream received
	Answered   int   // calls answered with the upstream's 503
	FailedFast int   // gRPC errors with every attempt refused by fetchd before sending
	Other      int   // any other status or error
	FirstErr   string
	Stopped    map[string]int // fetchd's retry_stopped over all calls
	Elapsed    time.Duration
}

// PerCall is upstream requests per call.
func (o outageResult) PerCall() float64 {
	if o.Calls == 0 {
		return 0
	}
	return float64(o.Upstream) / float64(o.Calls)
}

// errorsCounted reports whether any call went wrong where every call should
// have succeeded.
func (r *results) errorsCounted() bool {
	for _, g := range r.Throughput {
		for _, l := range g.Levels {
			if l.Errors > 0 {
				return true
			}
		}
	}
	for _, m := range r.Memory {
		if m.Errors > 0 || m.OK != r.Config.InFlight || m.Arrived < r.Config.InFlight {
			return true
		}
	}
	for _, o := range r.Outage {
		if o.Other > 0 {
			return true
		}
	}
	return false
}

// run measures every gateway: throughput and latency per concurrency
// (gateways interleaved at each level, so drift on a shared machine falls
// on all of them), then memory and then the outage, each with a fresh
// gateway process. Progress goes to log.
func run(ctx context.Context, cfg config, log io.Writer) (*results, error) {
	up, err := startUpstream()
	if err != nil {
		return nil, err
	}
	defer up.Close()
	dir, err := os.MkdirTemp("", "benchcompare-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	res := &results{Config: cfg, MaxConn: haproxyMaxConn(20000, fileLimit())}
	s := &setup{upstream: up, dir: dir, fetchd: cfg.Fetchd, self: cfg.Self, haproxy: cfg.Haproxy, maxConn: res.MaxConn}
	res.Machine = describeMachine(cfg)

	if err := throughput(ctx, s, cfg, res, log); err != nil {
		return nil, err
	}
	for _, name := range cfg.Gateways {
		m, err := holdMany(ctx, s, name, cfg, log)
		if err != nil {
			return nil, err
		}
		res.Memory = append(res.Memory, m)
	}
	for _, name := range cfg.Gateways {
		o, err := outage(ctx, s, name, cfg, log)
		if err != nil {
			return nil, err
		}
		res.Outage = append(res.Outage, o)
	}
	res.Machine.LoadEnd = loadAverage()
	return res, nil
}

func throughput(ctx context.Context, s *setup, cfg config, res *results, log io.Writer) error {
	gws := make([]*gateway, 0, len(cfg.Gateways))
	defer func() {
		for _, g := range gws {
			g.close()
		}
	}()
	for _, name := range cfg.Gateways {
		g, err := s.start(ctx, name)
		if err != nil {
			return err
		}
		gws = append(gws, g)
		res.Throughput = append(res.Throughput, gatewayLevels{Name: name})
	}
	for _, c := range cfg.Concurrency {
		for i, g := range gws {
			newCall := func() call { return g.newCall(ctx, "/1k") }
			if cfg.Warmup > 0 {
				closedLoop(ctx, c, cfg.Warmup, newCall)
			}
			var cpu0, cpu1 time.Duration
			var cpuErr error
			if g.pid != 0 {
				cpu0, cpuErr = cpuTime(g.pid)
			}
			r := closedLoop(ctx, c, cfg.Duration, newCall)
			if g.pid != 0 && cpuErr == nil {
				cpu1, cpuErr = cpuTime(g.pid)
			}
			if cpuErr != nil {
				return fmt.Errorf("%s: CPU time: %w", g.name, cpuErr)
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			l := newLevel(c, r, cpu1-cpu0)
			res.Throughput[i].Levels = append(res.Throughput[i].Levels, l)
			fmt.Fprintf(log, "throughput %-9s c=%-3d %8.0f req/s  p50 %-9s p99 %-9s errors %d%s\n",
				g.name, c, l.RPS, fmtDur(l.P50), fmtDur(l.P99), l.Errors, firstErr(l.FirstErr))
		}
	}
	return nil
}

// holdMany puts cfg.InFlight requests to /slow in flight through a fresh
// gateway, reads its memory once the upstream holds them all (or after
// cfg.InFlightWait), then releases them and counts the answers.
func holdMany(ctx context.Context, s *setup, name string, cfg config, log io.Writer) (memResult, error) {
	m := memResult{Name: name}
	g, err := s.start(ctx, name)
	if err != nil {
		return m, err
	}
	defer g.close()
	m.HasProcess = g.pid != 0
	if err := check(g.newCall(ctx, "/1k")()); err != nil {
		return m, fmt.Errorf("%s: first call: %w", name, err)
	}
	if m.HasProcess {
		if m.Idle, err = readMemory(g.pid); err != nil {
			return m, err
		}
	}
	// Every call ends: released, or cut by this bound if the gateway
	// misbehaves.
	callCtx, cancel := context.WithTimeout(ctx, cfg.InFlightWait+time.Minute)
	defer cancel()
	gate := s.upstream.holdSlow(cfg.InFlight)
	defer gate.open()
	var (
		wg        sync.WaitGroup
		ok, fails atomic.Int64
		errOnce   sync.Once
	)
	start := time.Now()
	for range cfg.InFlight {
		c := g.newCall(callCtx, "/slow")
		wg.Go(func() {
			a, err := c()
			if err == nil && a.status == 200 {
				ok.Add(1)
				return
			}
			fails.Add(1)
			if err == nil {
				err = fmt.Errorf("status %d", a.status)
			}
			errOnce.Do(func() { m.FirstErr = err.Error() })
		})
	}
	m.Arrived = gate.wait(cfg.InFlightWait)
	m.Reached = time.Since(start)
	if m.HasProcess {
		if m.Held, err = readMemory(g.pid); err != nil {
			return m, err
		}
	}
	gate.open()
	wg.Wait()
	m.OK, m.Errors = int(ok.Load()), int(fails.Load())
	fmt.Fprintf(log, "memory     %-9s %d in flight after %s: RSS %.1f MiB (idle %.1f MiB), %d answered 200, %d errors%s\n",
		name, m.Arrived, fmtDur(m.Reached), MiB(m.Held.RSS), MiB(m.Idle.RSS), m.OK, m.Errors, firstErr(m.FirstErr))
	return m, ctx.Err()
}

// outage sends cfg.OutageCalls calls to /503 through a fresh gateway (so
// fetchd's budget and breaker start clean) and counts what reached the
// upstream.
func outage(ctx context.Context, s *setup, name string, cfg config, log io.Writer) (outageResult, error) {
	o := outageResult{Name: name, Calls: cfg.OutageCalls, Stopped: map[string]int{}}
	g, err := s.start(ctx, name)
	if err != nil {
		return o, err
	}
	defer g.close()
	before := s.upstream.failed.Load()
	var (
		mu   sync.Mutex
		next atomic.Int64
		wg   sync.WaitGroup
	)
	start := time.Now()
	for range min(cfg.OutageConcurrency, cfg.OutageCalls) {
		c := g.newCall(ctx, "/503")
		wg.Go(func() {
			for next.Add(1) <= int64(cfg.OutageCalls) && ctx.Err() == nil {
				a, err := c()
				mu.Lock()
				switch {
				case err == nil && a.status == 503:
					o.Answered++
				case err != nil && a.fast:
					o.FailedFast++
				default:
					o.Other++
					if o.FirstErr == "" {
						o.FirstErr = fmt.Sprintf("status %d, error %v", a.status, err)
					}
				}
				if a.stopped != "" {
					outcome := "503"
					if err != nil {
						outcome = status.Code(err).String()
					}
					o.Stopped[outcome+" "+a.stopped]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	o.Elapsed = time.Since(start)
	o.Upstream = s.upstream.failed.Load() - before
	fmt.Fprintf(log, "outage     %-9s %d calls: %d upstream requests (%.2f per call), %d answered 503, %d failed fast, %d other%s\n",
		name, o.Calls, o.Upstream, o.PerCall(), o.Answered, o.FailedFast, o.Other, firstErr(o.FirstErr))
	return o, ctx.Err()
}

func firstErr(s string) string {
	if s == "" {
		return ""
	}
	return " (first: " + s + ")"
}

// errCounted is returned by main's run when the report was written but some
// calls failed.
var errCounted = errors.New("some calls failed where all should have succeeded; see the tables")
