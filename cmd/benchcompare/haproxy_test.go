package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestHaproxyConfig(t *testing.T) {
	t.Parallel()
	c := haproxyConfig{Bind: "127.0.0.1:18080", Upstream: "127.0.0.1:18081", MaxConn: 9000}
	got := c.render()
	for _, line := range []string{
		"global\n    maxconn 9000\n",
		"    mode http\n",
		"    option http-keep-alive\n",
		"    timeout connect 3s\n",
		"    timeout client 30s\n",
		"    timeout server 30s\n",
		"    retries 3\n",
		"    retry-on conn-failure empty-response response-timeout 503 502 504\n",
		"    bind 127.0.0.1:18080\n    maxconn 9000\n",
		"    server upstream 127.0.0.1:18081 maxconn 9000\n",
	} {
		if !strings.Contains(got, line) {
			t.Errorf("config lacks %q:\n%s", line, got)
		}
	}
	if strings.Contains(got, "log") {
		t.Errorf("config logs:\n%s", got)
	}

	// haproxy itself accepts it, where it is installed.
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Log("haproxy not installed: config not checked by haproxy -c")
		return
	}
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(got), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
	v, err := haproxyVersion(bin)
	if err != nil || !strings.HasPrefix(v, "HAProxy version ") || strings.Contains(v, "\n") {
		t.Errorf("haproxyVersion = %q, %v", v, err)
	}
}

func TestHaproxyMaxConn(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		want  int
		limit uint64
		got   int
	}{
		{20000, 1 << 20, 20000}, // room for two descriptors per connection
		{20000, 40200, 20000},
		{20000, 20000, 9000}, // rounded down to a thousand
		{20000, 1024, 412},   // too small to round
		{20000, 100, 1},
		{20000, 1 << 63, 20000},
	} {
		if got := haproxyMaxConn(tc.want, tc.limit); got != tc.got {
			t.Errorf("haproxyMaxConn(%d, %d) = %d, want %d", tc.want, tc.limit, got, tc.got)
		}
	}
}
