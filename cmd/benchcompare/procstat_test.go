package main

import (
	"os"
	"runtime"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		stat  string
		ticks int64
		want  time.Duration
	}{
		// utime 250 and stime 50 ticks at 100 per second.
		{"plain", "23634 (x) R 23592 23575 4842 0 -1 4194304 196 0 0 0 250 50 0 0 20 0 4 0 67656 1256366080 440", 100, 3 * time.Second},
		// A command name with spaces and parentheses must not shift the fields.
		{"odd name", "7 (a b) (c) S 1 7 7 0 -1 4194560 0 0 0 0 7 3 9 9 20 0 1 0 5 0 0", 100, 100 * time.Millisecond},
		{"other tick rate", "1 (init) S 0 1 1 0 -1 0 0 0 0 0 1000 0 0 0 20 0 1 0 5 0 0", 1000, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatCPU([]byte(tc.stat), tc.ticks)
			if err != nil || got != tc.want {
				t.Fatalf("parseStatCPU = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	for _, bad := range []string{"", "1 (x", "1 (x) R 1 2 3", "1 (x) R 1 1 1 0 -1 0 0 0 0 0 ten 0 0"} {
		if got, err := parseStatCPU([]byte(bad), 100); err == nil {
			t.Errorf("parseStatCPU(%q) = %v, want an error", bad, got)
		}
	}
}

func TestParseSchedstat(t *testing.T) {
	t.Parallel()
	got, err := parseSchedstat([]byte("102492 3638183 2\n"))
	if err != nil || got != 102492*time.Nanosecond {
		t.Fatalf("parseSchedstat = %v, %v", got, err)
	}
	for _, bad := range []string{"", "\n", "x 1 2"} {
		if _, err := parseSchedstat([]byte(bad)); err == nil {
			t.Errorf("parseSchedstat(%q): no error", bad)
		}
	}
}

func TestParseStatus(t *testing.T) {
	t.Parallel()
	status := "Name:\tx\nVmPeak:\t 1226920 kB\nVmHWM:\t    3000 kB\nVmRSS:\t    2128 kB\nRssAnon:\t     584 kB\n"
	got, err := parseStatus([]byte(status))
	if err != nil || got != (memory{RSS: 2128 << 10, HWM: 3000 << 10}) {
		t.Fatalf("parseStatus = %+v, %v", got, err)
	}
	for _, bad := range []string{"Name:\tx\n", "VmRSS:\t 12 kB\n", "VmRSS:\t 12 MB\nVmHWM:\t 12 kB\n", "VmRSS:\t x kB\nVmHWM:\t 12 kB\n"} {
		if got, err := parseStatus([]byte(bad)); err == nil {
			t.Errorf("parseStatus(%q) = %+v, want an error", bad, got)
		}
	}
}

// The readers agree with what this test process does: CPU time grows
// while it computes, and so does its RSS when it touches memory. Not
// parallel: other tests' garbage returned to the OS meanwhile would blur
// the memory reading.
func TestProcOwnProcess(t *testing.T) {
	pid := os.Getpid()
	before, err := cpuTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	if before <= 0 {
		t.Fatalf("cpuTime = %v, want > 0", before)
	}
	// Compute until the schedstat sum has grown by 30ms (bounded).
	deadline := time.Now().Add(20 * time.Second)
	var after time.Duration
	x := 0
	for after < before+30*time.Millisecond {
		for i := range 1 << 20 {
			x ^= i * 31
		}
		if time.Now().After(deadline) {
			t.Fatalf("cpuTime stayed at %v after 20s of computing", after)
		}
		if after, err = cpuTime(pid); err != nil {
			t.Fatal(err)
		}
	}
	runtime.KeepAlive(x)
	// The clock-tick fallback reads the same process: it agrees within
	// tick accounting's error.
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	ticks, err := parseStatCPU(b, clockTicks())
	if err != nil {
		t.Fatal(err)
	}
	now, err := cpuTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	if diff := (ticks - now).Abs(); diff > now/5+200*time.Millisecond {
		t.Errorf("utime+stime %v, schedstat sum %v: more apart than tick accounting explains", ticks, now)
	}

	m0, err := readMemory(pid)
	if err != nil {
		t.Fatal(err)
	}
	if m0.RSS <= 0 || m0.HWM < m0.RSS {
		t.Fatalf("readMemory = %+v, want RSS > 0 and HWM >= RSS", m0)
	}
	buf := make([]byte, 64<<20)
	for i := 0; i < len(buf); i += 4096 {
		buf[i] = 1
	}
	m1, err := readMemory(pid)
	if err != nil {
		t.Fatal(err)
	}
	runtime.KeepAlive(buf)
	if m1.HWM-m0.RSS < 48<<20 {
		t.Errorf("VmHWM grew from RSS %.1f MiB to %.1f MiB after touching 64 MiB", MiB(m0.RSS), MiB(m1.HWM))
	}
}

func TestClockTicks(t *testing.T) {
	t.Parallel()
	if n := clockTicks(); n < 1 {
		t.Fatalf("clockTicks = %d", n)
	}
}
