package main

import (
	"bufio"
	"os"
	"runtime"
	"strings"
	"time"
)

// machine is what a reader needs to weigh the numbers.
type machine struct {
	CPU        string // model name from /proc/cpuinfo
	Cores      int
	GOMAXPROCS int
	Kernel     string
	Go         string
	Haproxy    string // first line of `haproxy -v`; empty when haproxy is not compared
	FileLimit  uint64
	Date       time.Time
	// The 1, 5 and 15 minute load averages when the run began and ended:
	// other work on the machine shares its cores with the run.
	LoadStart, LoadEnd string
}

func describeMachine(cfg config) machine {
	m := machine{
		CPU:        cpuModel(),
		Cores:      runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		Kernel:     kernel(),
		Go:         runtime.Version(),
		FileLimit:  fileLimit(),
		Date:       time.Now().UTC(),
		LoadStart:  loadAverage(),
	}
	for _, g := range cfg.Gateways {
		if g == gwHaproxy {
			if v, err := haproxyVersion(cfg.Haproxy); err == nil {
				m.Haproxy = v
			}
		}
	}
	return m
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// kernel is `uname -sr`, read from /proc.
func kernel() string {
	typ, err1 := os.ReadFile("/proc/sys/kernel/ostype")
	rel, err2 := os.ReadFile("/proc/sys/kernel/osrelease")
	if err1 != nil || err2 != nil {
		return runtime.GOOS
	}
	return strings.TrimSpace(string(typ)) + " " + strings.TrimSpace(string(rel))
}

// loadAverage is the first three fields of /proc/loadavg.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
