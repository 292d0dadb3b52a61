package main

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for the benchcompare binary when
// the comparison re-executes itself as `forwarder`.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "forwarder" {
		if err := forwarderCommand(os.Args[2:], os.Stdout, os.Stderr); err != nil {
			os.Stderr.WriteString("forwarder: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// buildFetchd builds the fetchd binary of this tree.
func buildFetchd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fetchd")
	if out, err := exec.Command("go", "build", "-o", bin, "../fetchd").CombinedOutput(); err != nil {
		t.Fatalf("go build ../fetchd: %v\n%s", err, out)
	}
	return bin
}

// The whole comparison in a short run: real gateway processes (fetchd built from
// this tree, the forwarder re-executed from this binary, haproxy where it
// is installed) behind the real upstream, and the report and chart it
// writes.
func TestCompareSmoke(t *testing.T) {
	t.Parallel()
	fetchd := buildFetchd(t)
	gateways := "direct,forwarder,fetchd"
	_, err := exec.LookPath("haproxy")
	haproxy := err == nil
	if haproxy {
		gateways += ",haproxy"
	} else {
		t.Log("haproxy not installed: compared without it")
	}
	dir := t.TempDir()
	out, chartPath := filepath.Join(dir, "BENCHMARKS.md"), filepath.Join(dir, "docs", "bench-compare.png")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	res, err := compare(ctx, []string{
		"-fetchd", fetchd, "-gateways", gateways, "-concurrency", "1,4",
		"-duration", "300ms", "-warmup", "50ms", "-inflight", "50", "-inflight-wait", "30s",
		"-outage-calls", "20", "-outage-concurrency", "4", "-out", out, "-chart", chartPath,
	}, &stdout, &stderr)
	t.Logf("progress:\n%s", stderr.String())
	if err != nil {
		t.Fatalf("compare: %v\n%s", err, stdout.String())
	}
	want := strings.Split(gateways, ",")
	if len(res.Throughput) != len(want) || len(res.Memory) != len(want) || len(res.Outage) != len(want) {
		t.Fatalf("results for %d/%d/%d gateways, want %d", len(res.Throughput), len(res.Memory), len(res.Outage), len(want))
	}

	for i, g := range res.Throughput {
		if g.Name != want[i] || len(g.Levels) != 2 {
			t.Fatalf("throughput[%d] = %s with %d levels", i, g.Name, len(g.Levels))
		}
		for _, l := range g.Levels {
			if l.RPS <= 0 || l.Requests == 0 || l.Errors != 0 || l.P50 <= 0 || l.P99 < l.P50 {
				t.Errorf("%s c=%d: %+v", g.Name, l.Concurrency, l)
			}
			if hasProcess := g.Name != gwDirect; hasProcess != (l.CPUPerReq > 0) {
				t.Errorf("%s c=%d: CPU per request %v", g.Name, l.Concurrency, l.CPUPerReq)
			}
		}
	}
	for _, m := range res.Memory {
		if m.Arrived != 50 || m.OK != 50 || m.Errors != 0 {
			t.Errorf("memory %s: %d arrived, %d answered 200, %d errors (%s)", m.Name, m.Arrived, m.OK, m.Errors, m.FirstErr)
		}
		if m.HasProcess != (m.Name != gwDirect) || (m.HasProcess && (m.Idle.RSS <= 0 || m.Held.RSS <= 0 || m.Held.HWM < m.Held.RSS)) {
			t.Errorf("memory %s: %+v", m.Name, m)
		}
	}
	for _, o := range res.Outage {
		if o.Calls != 20 || o.Answered+o.FailedFast != 20 || o.Other != 0 {
			t.Errorf("outage %s: %+v", o.Name, o)
		}
		switch o.Name {
		case gwDirect, gwForwarder:
			if o.PerCall() != 1 || o.FailedFast != 0 {
				t.Errorf("outage %s: %.2f upstream requests per call, %d failed fast; want 1.00 and none", o.Name, o.PerCall(), o.FailedFast)
			}
		case gwFetchd:
			if o.PerCall() > 4 || o.Upstream == 0 || len(o.Stopped) == 0 {
				t.Errorf("outage fetchd: %.2f upstream requests per call (want at most 4), stopped %v", o.PerCall(), o.Stopped)
			}
		case gwHaproxy:
			// retries 3 and retry-on 503: every call is tried 4 times.
			if o.PerCall() != 4 {
				t.Errorf("outage haproxy: %.2f upstream requests per call, want 4.00", o.PerCall())
			}
		}
	}
	if haproxy && res.Machine.Haproxy == "" {
		t.Error("haproxy's version not recorded")
	}

	// The outputs: the table on stdout, the report and a decodable chart.
	for _, s := range []string{"Throughput and latency", "fetchd / forwarder", "Memory with 50 requests in flight", "wrote " + out} {
		if !strings.Contains(stdout.String(), s) {
			t.Errorf("stdout lacks %q:\n%s", s, stdout.String())
		}
	}
	md, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"](docs/bench-compare.png)", "| fetchd | 4 |", "| forwarder | 1 |", "## Upstream requests per call during an outage", "-duration 300ms"} {
		if !strings.Contains(string(md), s) {
			t.Errorf("BENCHMARKS.md lacks %q", s)
		}
	}
	f, err := os.Open(chartPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if cfg, err := png.DecodeConfig(f); err != nil || cfg.Width != chartW || cfg.Height != chartH {
		t.Errorf("chart: %+v, %v", cfg, err)
	}
}

func TestCompareFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-gateways", "direct,nginx"},
		{"-concurrency", "1,x"},
		{"-concurrency", "0"},
		{"-duration", "0s", "-gateways", "direct"},
		{"-gateways", "fetchd"}, // no -fetchd
		{"-gateways", "haproxy", "-haproxy", "/nonexistent/haproxy"},
		{"extra"},
	} {
		var out bytes.Buffer
		if _, err := compare(context.Background(), args, &out, &out); err == nil {
			t.Errorf("compare %q: no error", args)
		}
	}
}
