// Package redistest runs private redis-server processes for tests: one of
// a test's own, on a free port of 127.0.0.1, which the test may kill and
// start again on the same port and directory (its data kept when the
// arguments ask for persistence). Tests that change server-wide state, or
// that take Redis down, use it instead of the shared Redis at REDIS_URL.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fetchd/fetchd/internal/nettest"
)

// Persistent is the arguments of a server that keeps every write across a
// SIGKILL: append-only, fsync on every write.
var Persistent = []string{"--appendonly", "yes", "--appendfsync", "always"}

// Server is a running (or killed) redis-server of one test.
type Server struct {
	// Addr is host:port; it stays the same across Kill and Start.
	Addr string

	bin, dir string
	args     []string
	cmd      *exec.Cmd
	exited   chan struct{} // closed once cmd has been waited for
}

// Start starts a redis-server with args added to its command line (after
// the defaults: no snapshots, no append-only file, noeviction), killed when
// t ends. It fails t when CI=true and redis-server is not installed, and
// skips t otherwise.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server is required in CI: %v", err)
		}
		t.Skipf("redis-server not installed: %v", err)
	}
	dir := t.TempDir()
	// The free port can be taken by someone else before redis-server binds
	// it; try another then.
	for attempt := 1; ; attempt++ {
		s := &Server{Addr: nettest.FreeAddr(t), bin: bin, dir: dir, args: args}
		err := s.run()
		if err == nil {
			t.Cleanup(s.Kill)
			return s
		}
		if attempt == 3 {
			t.Fatalf("starting redis-server: %v", err)
		}
	}
}

// Restart starts the server again after Kill, on the same port, directory
// and arguments.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.run(); err != nil {
		t.Fatalf("restarting redis-server on %s: %v", s.Addr, err)
	}
}

// Kill ends the server with SIGKILL and waits for it to exit. It does
// nothing to a server not running.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
	s.cmd = nil
}

// run starts redis-server and returns once it has loaded its data and
// accepts connections (it logs "Ready to accept connections" then, which
// spares polling it).
func (s *Server) run() error {
	host, port, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return err
	}
	args := append([]string{"--port", port, "--bind", host, "--dir", s.dir,
		"--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction"}, s.args...)
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	out, w, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Start()
	_ = w.Close() // the server holds its own copy; out reads EOF when it exits
	if err != nil {
		_ = out.Close()
		return err
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	ready := make(chan error, 1)
	go func() {
		defer close(s.exited)
		sc := bufio.NewScanner(out)
		var last string
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Ready to accept connections") {
				ready <- nil
				_, _ = io.Copy(io.Discard, out)
				break
			}
			last = sc.Text()
		}
		_ = out.Close()
		werr := cmd.Wait()
		ready <- fmt.Errorf("redis-server exited before it was ready (%v): %s", werr, last)
	}()
	select {
	case err = <-ready:
	case <-time.After(10 * time.Second):
		err = errors.New("redis-server not ready after 10s")
	}
	if err != nil {
		s.Kill()
	}
	return err
}
