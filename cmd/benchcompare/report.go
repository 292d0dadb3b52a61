package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// table is a header and rows of cells, rendered as markdown or as text.
type table struct {
	head []string
	rows [][]string
}

func (t table) markdown(b *strings.Builder) {
	b.WriteString("| " + strings.Join(t.head, " | ") + " |\n|")
	for range t.head {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range t.rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
}

func (t table) text(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(t.head, "\t")+"\t")
	for _, r := range t.rows {
		fmt.Fprintln(tw, strings.Join(r, "\t")+"\t")
	}
	tw.Flush()
}

// fmtDur prints a latency with three significant digits or so.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
	return d.Round(time.Millisecond).String()
}

func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// levelOf returns g's level at concurrency c.
func levelOf(g gatewayLevels, c int) (level, bool) {
	for _, l := range g.Levels {
		if l.Concurrency == c {
			return l, true
		}
	}
	return level{}, false
}

func (r *results) gatewayLevels(name string) (gatewayLevels, bool) {
	for _, g := range r.Throughput {
		if g.Name == name {
			return g, true
		}
	}
	return gatewayLevels{}, false
}

func (r *results) throughputTable() table {
	t := table{head: []string{"gateway", "concurrency", "req/s", "p50", "p99", "errors", "gateway CPU/req", "req/s vs direct", "p50 vs direct"}}
	direct, hasDirect := r.gatewayLevels(gwDirect)
	for _, c := range r.Config.Concurrency {
		for _, g := range r.Throughput {
			l, ok := levelOf(g, c)
			if !ok {
				continue
			}
			cpu, rps, p50 := "-", "-", "-"
			if l.CPUPerReq > 0 {
				cpu = fmt.Sprintf("%.1fµs", float64(l.CPUPerReq)/float64(time.Microsecond))
			}
			if d, ok := levelOf(direct, c); hasDirect && ok {
				rps, p50 = ratio(l.RPS, d.RPS), ratio(float64(l.P50), float64(d.P50))
			}
			errs := strconv.Itoa(l.Errors)
			if l.Errors > 0 {
				errs += " (ERRORS)"
			}
			t.rows = append(t.rows, []string{g.Name, strconv.Itoa(c), fmt.Sprintf("%.0f", l.RPS), fmtDur(l.P50), fmtDur(l.P99), errs, cpu, rps, p50})
		}
	}
	return t
}

// fetchdVsForwarder is fetchd's throughput over the forwarder's per
// concurrency, when both ran.
func (r *results) fetchdVsForwarder() table {
	t := table{head: []string{"concurrency", "fetchd req/s", "forwarder req/s", "fetchd / forwarder"}}
	f, ok1 := r.gatewayLevels(gwFetchd)
	w, ok2 := r.gatewayLevels(gwForwarder)
	if !ok1 || !ok2 {
		return t
	}
	for _, c := range r.Config.Concurrency {
		a, ok1 := levelOf(f, c)
		b, ok2 := levelOf(w, c)
		if ok1 && ok2 {
			t.rows = append(t.rows, []string{strconv.Itoa(c), fmt.Sprintf("%.0f", a.RPS), fmt.Sprintf("%.0f", b.RPS), ratio(a.RPS, b.RPS)})
		}
	}
	return t
}

func (r *results) memoryTable() table {
	n := r.Config.InFlight
	t := table{head: []string{"gateway", "idle RSS", fmt.Sprintf("RSS, %d in flight", n), "peak RSS (VmHWM)", "in flight reached", "time to reach", "answered 200"}}
	for _, m := range r.Memory {
		idle, held, peak := "-", "-", "-"
		if m.HasProcess {
			idle, held, peak = mib(m.Idle.RSS), mib(m.Held.RSS), mib(m.Held.HWM)
		}
		reached := strconv.Itoa(m.Arrived)
		if m.Arrived < n {
			reached += fmt.Sprintf(" (of %d)", n)
		}
		answered := strconv.Itoa(m.OK)
		if m.Errors > 0 {
			answered += fmt.Sprintf(" (%d ERRORS)", m.Errors)
		}
		t.rows = append(t.rows, []string{m.Name, idle, held, peak, reached, fmtDur(m.Reached), answered})
	}
	return t
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", MiB(n)) }

func (r *results) outageTable() table {
	t := table{head: []string{"gateway", "calls", "upstream requests", "per call", "answered 503", "failed fast", "other", "time"}}
	for _, o := range r.Outage {
		t.rows = append(t.rows, []string{o.Name, strconv.Itoa(o.Calls), strconv.FormatInt(o.Upstream, 10),
			fmt.Sprintf("%.2f", o.PerCall()), strconv.Itoa(o.Answered), strconv.Itoa(o.FailedFast), strconv.Itoa(o.Other), fmtDur(o.Elapsed)})
	}
	return t
}

// stopped lists why fetchd stopped retrying, most frequent first.
func stopped(o outageResult) string {
	keys := slices.SortedFunc(maps.Keys(o.Stopped), func(a, b string) int {
		if d := o.Stopped[b] - o.Stopped[a]; d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, o.Stopped[k])
	}
	return strings.Join(parts, ", ")
}

// printText writes the tables for a terminal.
func (r *results) printText(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "\n%s, %d cores, %s, %s, %s; load average %s at the start, %s at the end\n",
		m.CPU, m.Cores, m.Kernel, m.Go, orDash(m.Haproxy), m.LoadStart, m.LoadEnd)
	fmt.Fprintf(w, "\nThroughput and latency (closed loop, %s per level after %s warm-up; CPU is the gateway process's)\n", r.Config.Duration, r.Config.Warmup)
	r.throughputTable().text(w)
	if t := r.fetchdVsForwarder(); len(t.rows) > 0 {
		fmt.Fprintln(w, "\nfetchd against the bare gRPC forwarder (target: 0.90 or more)")
		t.text(w)
	}
	fmt.Fprintf(w, "\nMemory with %d requests in flight (fresh process each)\n", r.Config.InFlight)
	r.memoryTable().text(w)
	fmt.Fprintf(w, "\nUpstream answering 503 to everything: %d calls at concurrency %d (fresh process each)\n", r.Config.OutageCalls, r.Config.OutageConcurrency)
	r.outageTable().text(w)
	for _, o := range r.Outage {
		if len(o.Stopped) > 0 {
			fmt.Fprintf(w, "%s calls by outcome and retry_stopped: %s\n", o.Name, stopped(o))
		}
	}
}

// markdown is BENCHMARKS.md; chart is the chart's path relative to it.
func (r *results) markdown(chart string) string {
	var b strings.Builder
	m, cfg := r.Machine, r.Config
	fmt.Fprintf(&b, `# fetchd against other gateways

One run on one machine, every gateway under the same load from the same client, calling the same
upstream: an HTTP/1.1 server (keep-alive) inside the benchmark process answering %d-byte bodies.

- **direct**: no gateway, a pooled Go net/http client straight to the upstream (the limit).
- **fetchd**: the fetchd binary as it ships (file idempotency store, JSON call log on, telemetry
  without export, retry budget and breaker at their defaults, the garbage collector's 64 MiB goal
  floor of --gc-min-heap-mib), called over one gRPC connection by a caller with a bearer token.
- **forwarder**: a bare grpc-go server with the same FetchService.Fetch answered by a pooled
  net/http client: no retries, policy, guard or telemetry, Go's default GOGC=100. The gateway
  fetchd is judged against (target: fetchd at 0.90 of its throughput or more).
- **haproxy**: an HTTP reverse proxy configured as a user would for retries (up to 4 attempts).

Each gateway is a separate OS process, so its CPU time and memory are its own.

![req/s by concurrency, CPU per request and memory with %d requests in flight](%s)

## Machine

| | |
|---|---|
| CPU | %s (%d cores, GOMAXPROCS %d) |
| Kernel | %s |
| Go | %s |
| haproxy | %s |
| Open-file limit | %d |
| Load average (1, 5, 15 min) | %s at the start, %s at the end |
| Date | %s |

`+"```"+`
%s
`+"```"+`

The load generator, the upstream and the gateway share these %d cores. The direct baseline has no
gateway process competing with the client and the upstream for them, which is part of what its
ratio shows; a gateway on its own machine would lose less.

## Throughput and latency

A closed loop: each of N workers sends the next request when the last one is answered; every
answer is checked (status 200, %d-byte body). Each level runs for %s after a %s warm-up that is not
counted; gateways take turns at each level. p50 and p99 are exact, from every latency recorded.
Gateway CPU/req is the gateway process's CPU time (user and system, summed over its threads
from /proc/PID/task/*/schedstat) over the measured window, divided by the requests completed.

`, bodySize, cfg.InFlight, chart, m.CPU, m.Cores, m.GOMAXPROCS, m.Kernel, m.Go, orDash(m.Haproxy), m.FileLimit, m.LoadStart, m.LoadEnd,
		m.Date.Format("2006-01-02 15:04 MST"), cfg.Command, m.GOMAXPROCS, bodySize, cfg.Duration, cfg.Warmup)
	r.throughputTable().markdown(&b)
	if t := r.fetchdVsForwarder(); len(t.rows) > 0 {
		b.WriteString("\nfetchd against the bare gRPC forwarder:\n\n")
		t.markdown(&b)
	}
	fmt.Fprintf(&b, `
## Memory with %d requests in flight

A fresh gateway process answers one call, and its resident set is read (idle RSS). Then %d
requests to an upstream endpoint that holds them are started at once; when the upstream has seen
them all arrive, the gateway's VmRSS and VmHWM are read from /proc/PID/status, and the requests
are released and must all be answered 200. The gRPC gateways carry all of them on one client
connection (neither fetchd nor the forwarder limits concurrent streams); direct and haproxy use
one pooled HTTP/1.1 connection per request.

`, cfg.InFlight, cfg.InFlight)
	r.memoryTable().markdown(&b)
	fmt.Fprintf(&b, `
## Upstream requests per call during an outage

The upstream answers 503 to everything. %d GET calls at concurrency %d go through a fresh gateway
process (so fetchd's retry budget and breaker start clean), and the requests the upstream
received are counted. fetchd runs with max_attempts 4 and haproxy with retries 3: both allow up to
4 attempts. "Failed fast" is a call fetchd answered UNAVAILABLE without sending anything (its
breaker open); "answered 503" is the upstream's 503 passed back, after as many attempts as the
gateway made.

`, cfg.OutageCalls, cfg.OutageConcurrency)
	r.outageTable().markdown(&b)
	for _, o := range r.Outage {
		if len(o.Stopped) > 0 {
			fmt.Fprintf(&b, "\n%s's calls by outcome (the upstream's 503, or the gRPC code) and retry_stopped: %s.\n", o.Name, stopped(o))
		}
	}
	fmt.Fprintf(&b, `
## How the gateways run

fetchd: `+"`fetchd --listen 127.0.0.1:0 --admin \"\" --config policy.yaml --store file:DIR/fetchd.db`"+`, no
OTEL_* variables, stderr (the call log) read and discarded. policy.yaml (the attempt timeout
is haproxy's "timeout server", so requests held for the memory measurement are not cut and
retried at fetchd's default 10s):

`+"```yaml\n%s```"+`

forwarder: `+"`benchcompare forwarder -listen 127.0.0.1:0`"+` (grpc-go server defaults; http.Transport with
MaxIdleConnsPerHost 20000).

haproxy: `+"`haproxy -f haproxy.cfg -db`"+`; maxconn is %d to fit the open-file limit (haproxy needs two
descriptors per connection and refuses to start when it cannot raise its limit that far):

`+"```\n%s```"+`

The clients: net/http with one Transport per gateway (MaxIdleConnsPerHost 20000, compression
off, one request object and read buffer per worker); gRPC with one ClientConn per gateway
(insecure, 1 MiB stream and 64 MiB connection windows).
`, fetchdPolicy(), r.MaxConn, haproxyConfig{Bind: "127.0.0.1:PORT", Upstream: "127.0.0.1:UPSTREAM_PORT", MaxConn: r.MaxConn}.render())
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
