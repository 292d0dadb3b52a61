package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// fixture is a run's results with round numbers: fetchd at 0.90 of the
// forwarder's throughput and direct at twice fetchd's.
func fixture() *results {
	lv := func(c int, rps float64, p50 time.Duration, cpu time.Duration) level {
		return level{Concurrency: c, Requests: int(rps) * 10, RPS: rps, P50: p50, P99: 4 * p50, Elapsed: 10 * time.Second, CPUPerReq: cpu}
	}
	return &results{
		Machine: machine{CPU: "Test CPU 9000", Cores: 2, GOMAXPROCS: 2, Kernel: "Linux 6.1", Go: "go1.26.0",
			Haproxy: "HAProxy version 2.6.12", FileLimit: 20000, LoadStart: "0.50 0.40 0.30", LoadEnd: "1.90 0.90 0.50", Date: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)},
		Config: config{
			Gateways:    []string{gwDirect, gwFetchd, gwForwarder, gwHaproxy},
			Concurrency: []int{1, 16}, Duration: 10 * time.Second, Warmup: 2 * time.Second,
			InFlight: 5000, OutageCalls: 2000, OutageConcurrency: 16,
			Command: "scripts/bench-compare -duration 10s",
		},
		MaxConn: 9000,
		Throughput: []gatewayLevels{
			{gwDirect, []level{lv(1, 8000, 100*time.Microsecond, 0), lv(16, 12000, 1000*time.Microsecond, 0)}},
			{gwFetchd, []level{lv(1, 4000, 200*time.Microsecond, 150*time.Microsecond), lv(16, 6000, 2500*time.Microsecond, 120*time.Microsecond)}},
			{gwForwarder, []level{lv(1, 4444.4, 180*time.Microsecond, 90*time.Microsecond), lv(16, 6666.7, 2*time.Millisecond, 80*time.Microsecond)}},
			{gwHaproxy, []level{lv(1, 6000, 130*time.Microsecond, 40*time.Microsecond), lv(16, 9000, 1500*time.Microsecond, 30*time.Microsecond)}},
		},
		Memory: []memResult{
			{Name: gwDirect, Arrived: 5000, OK: 5000, Reached: 2 * time.Second},
			{Name: gwFetchd, HasProcess: true, Idle: memory{RSS: 20 << 20, HWM: 20 << 20}, Held: memory{RSS: 200 << 20, HWM: 210 << 20}, Arrived: 5000, OK: 5000, Reached: 3 * time.Second},
			{Name: gwForwarder, HasProcess: true, Idle: memory{RSS: 15 << 20}, Held: memory{RSS: 100 << 20, HWM: 100 << 20}, Arrived: 5000, OK: 5000, Reached: 2 * time.Second},
			{Name: gwHaproxy, HasProcess: true, Idle: memory{RSS: 10 << 20}, Held: memory{RSS: 50 << 20, HWM: 50 << 20}, Arrived: 4000, OK: 4990, Errors: 10, Reached: time.Minute},
		},
		Outage: []outageResult{
			{Name: gwDirect, Calls: 2000, Upstream: 2000, Answered: 2000},
			{Name: gwFetchd, Calls: 2000, Upstream: 2400, Answered: 1500, FailedFast: 500, Stopped: map[string]int{"503 retry_budget": 1000, "Unavailable breaker_open": 500, "503 breaker_open": 200, "503 max_attempts": 300}},
			{Name: gwForwarder, Calls: 2000, Upstream: 2000, Answered: 2000},
			{Name: gwHaproxy, Calls: 2000, Upstream: 8000, Answered: 2000},
		},
	}
}

func TestMarkdown(t *testing.T) {
	t.Parallel()
	md := fixture().markdown("docs/bench-compare.png")
	for _, want := range []string{
		"![req/s by concurrency, CPU per request and memory with 5000 requests in flight](docs/bench-compare.png)",
		"| CPU | Test CPU 9000 (2 cores, GOMAXPROCS 2) |",
		"| Kernel | Linux 6.1 |",
		"| Go | go1.26.0 |",
		"| haproxy | HAProxy version 2.6.12 |",
		"| Load average (1, 5, 15 min) | 0.50 0.40 0.30 at the start, 1.90 0.90 0.50 at the end |",
		"| Date | 2026-01-02 03:04 UTC |",
		"```\nscripts/bench-compare -duration 10s\n```",
		"share these 2 cores",
		// Ratios to direct: throughput and p50.
		"| gateway | concurrency | req/s | p50 | p99 | errors | gateway CPU/req | req/s vs direct | p50 vs direct |\n|---|---|---|---|---|---|---|---|---|\n",
		"| direct | 1 | 8000 | 100µs | 400µs | 0 | - | 1.00 | 1.00 |",
		"| fetchd | 1 | 4000 | 200µs | 800µs | 0 | 150.0µs | 0.50 | 2.00 |",
		"| haproxy | 16 | 9000 | 1500µs | 6000µs | 0 | 30.0µs | 0.75 | 1.50 |",
		// fetchd against the forwarder.
		"| 1 | 4000 | 4444 | 0.90 |",
		"| 16 | 6000 | 6667 | 0.90 |",
		// Memory, with a shortfall and errors called out.
		"| fetchd | 20.0 MiB | 200.0 MiB | 210.0 MiB | 5000 | 3s | 5000 |",
		"| direct | - | - | - | 5000 | 2s | 5000 |",
		"| haproxy | 10.0 MiB | 50.0 MiB | 50.0 MiB | 4000 (of 5000) | 1m0s | 4990 (10 ERRORS) |",
		// Amplification.
		"| direct | 2000 | 2000 | 1.00 | 2000 | 0 | 0 |",
		"| fetchd | 2000 | 2400 | 1.20 | 1500 | 500 | 0 |",
		"| haproxy | 2000 | 8000 | 4.00 | 2000 | 0 | 0 |",
		"fetchd's calls by outcome (the upstream's 503, or the gRPC code) and retry_stopped: 503 retry_budget 1000, Unavailable breaker_open 500, 503 max_attempts 300, 503 breaker_open 200.",
		// How the gateways ran.
		"max_attempts: 4",
		"maxconn is 9000",
		"    server upstream 127.0.0.1:UPSTREAM_PORT maxconn 9000\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(md)
	}
}

func TestErrorsCounted(t *testing.T) {
	t.Parallel()
	r := fixture()
	if !r.errorsCounted() {
		t.Fatal("haproxy's memory errors not counted")
	}
	r.Memory = r.Memory[:3]
	if r.errorsCounted() {
		t.Fatal("a clean run counted as failed")
	}
	r.Outage[3].Other = 1
	if !r.errorsCounted() {
		t.Fatal("an unexpected outage answer not counted")
	}
	r.Outage[3].Other = 0
	r.Throughput[1].Levels[1].Errors = 3
	if !r.errorsCounted() {
		t.Fatal("throughput errors not counted")
	}
	var b strings.Builder
	r.throughputTable().markdown(&b)
	if !strings.Contains(b.String(), "| fetchd | 16 | 6000 | 2500µs | 10.00ms | 3 (ERRORS) |") {
		t.Errorf("errors not flagged:\n%s", b.String())
	}
}

func TestPrintText(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	fixture().printText(&b)
	out := b.String()
	for _, want := range []string{"Throughput and latency", "fetchd / forwarder", "0.90", "Memory with 5000 requests in flight", "4000 (of 5000)", "fetchd calls by outcome and retry_stopped: 503 retry_budget 1000, Unavailable breaker_open 500, 503 max_attempts 300, 503 breaker_open 200"} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
}

func TestFmtDur(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0:                        "0",
		999 * time.Nanosecond:    "1µs",
		412 * time.Microsecond:   "412µs",
		9999 * time.Microsecond:  "9999µs",
		12345 * time.Microsecond: "12.35ms",
		1500 * time.Millisecond:  "1.5s",
	} {
		if got := fmtDur(d); got != want {
			t.Errorf("fmtDur(%v) = %q, want %q", d, got, want)
		}
	}
}
