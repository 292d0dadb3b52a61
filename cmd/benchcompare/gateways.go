package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
	"github.com/fetchd/fetchd/internal/identity"
	"github.com/fetchd/fetchd/internal/outbound"
)

// Gateway names, in the order they are reported.
const (
	gwDirect    = "direct"
	gwFetchd    = "fetchd"
	gwForwarder = "forwarder"
	gwHaproxy   = "haproxy"
)

// gateway is one way of reaching the upstream, with a client for it.
type gateway struct {
	name string
	pid  int // the gateway's own process; 0 for direct
	// newCall returns a call of path on the upstream through the gateway,
	// for one worker; ctx bounds its requests.
	newCall func(ctx context.Context, path string) call
	close   func() error
}

// setup is what the gateways are started with.
type setup struct {
	upstream *upstream
	dir      string   // for the gateways' files
	fetchd   string   // the fetchd binary
	self     []string // the command line that runs `benchcompare forwarder` without its arguments
	haproxy  string   // the haproxy binary
	maxConn  int      // haproxy's maxconn
}

// callerToken is the bearer token the benchmark calls fetchd with; the
// gRPC clients send it to the forwarder too, so both carry the same bytes.
const callerToken = "benchcompare-token"

// fetchdPolicy is the policy file the fetchd gateway runs with: loopback
// allowed, one caller with a bearer token (a policy file refuses anonymous
// calls unless it says otherwise), a target rule for the upstream with a
// pool large enough for every request in flight and up to 4 attempts
// (haproxy's retries 3), and an attempt timeout equal to haproxy's
// `timeout server`. Budgets and the breaker keep their defaults.
func fetchdPolicy() string {
	return fmt.Sprintf(`version: 1
egress: {allow_cidrs: [127.0.0.0/8]}
callers:
  - name: bench
    tokens: [%q]
targets:
  - host: "127.0.0.1"
    max_conns: 20000
    timeouts: {attempt: 30s}
    retry: {max_attempts: 4}
`, identity.FormatTokenHash(identity.HashToken(callerToken)))
}

func (s *setup) start(ctx context.Context, name string) (*gateway, error) {
	switch name {
	case gwDirect:
		newCall, closeIdle := httpCalls(s.upstream.URL)
		return &gateway{name: name, newCall: newCall, close: func() error { closeIdle(); return nil }}, nil
	case gwFetchd:
		return s.startFetchd(ctx)
	case gwForwarder:
		return s.startForwarder(ctx)
	case gwHaproxy:
		return s.startHaproxy(ctx)
	}
	return nil, fmt.Errorf("unknown gateway %q (want %s, %s, %s or %s)", name, gwDirect, gwFetchd, gwForwarder, gwHaproxy)
}

// httpCalls returns calls over one pooled net/http client to base, and
// a func that closes its idle connections.
func httpCalls(base string) (func(context.Context, string) call, func()) {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 20000,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	client := &http.Client{Transport: tr}
	newCall := func(ctx context.Context, path string) call {
		// One request and one buffer per worker, reused for every call.
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			return func() (answer, error) { return answer{}, err }
		}
		buf := make([]byte, 4096)
		return func() (answer, error) {
			resp, err := client.Do(req)
			if err != nil {
				return answer{}, err
			}
			n, err := drain(resp.Body, buf)
			resp.Body.Close()
			if err != nil {
				return answer{}, err
			}
			return answer{status: resp.StatusCode, bodyLen: n}, nil
		}
	}
	return newCall, tr.CloseIdleConnections
}

// drain reads r to its end into buf and returns the bytes read.
func drain(r io.Reader, buf []byte) (int, error) {
	n := 0
	for {
		k, err := r.Read(buf)
		n += k
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// grpcCalls returns calls of FetchService.Fetch over conn for a URL on the
// upstream.
func grpcCalls(conn *grpc.ClientConn, base string) func(context.Context, string) call {
	client := fetchdv1.NewFetchServiceClient(conn)
	return func(ctx context.Context, path string) call {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+callerToken)
		req := &fetchdv1.FetchRequest{Url: base + path}
		return func() (answer, error) {
			resp, err := client.Fetch(ctx, req)
			if err != nil {
				return failure(err), err
			}
			return answer{status: int(resp.GetStatus()), bodyLen: len(resp.GetBody()), stopped: resp.GetRetryStopped()}, nil
		}
	}
}

// failure reads fetchd's FetchFailure detail of a gRPC error: why retries
// stopped, and whether fetchd refused every attempt before sending (its
// breaker or a target's hold failed the call fast).
func failure(err error) answer {
	var a answer
	st, ok := status.FromError(err)
	if !ok {
		return a
	}
	for _, d := range st.Details() {
		f, ok := d.(*fetchdv1.FetchFailure)
		if !ok {
			continue
		}
		a.stopped = f.GetRetryStopped()
		atts := f.GetAttempts()
		a.fast = len(atts) > 0
		for _, at := range atts {
			if e := at.GetError(); e != outbound.ClassBreakerOpen && e != outbound.ClassTargetHold {
				a.fast = false
			}
		}
	}
	return a
}

// dialGRPC opens one client connection with flow-control windows large
// enough that thousands of concurrent calls are not held back by them.
// grpc-go servers set no limit on concurrent streams by default, and
// neither fetchd nor the forwarder sets one.
func dialGRPC(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(1<<20),
		grpc.WithInitialConnWindowSize(64<<20),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
}

// process is a gateway's running OS process.
type process struct {
	cmd  *exec.Cmd
	done chan error // cmd.Wait's result, once
	err  error
	once sync.Once
}

func newCommand(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	// The gateway dies with the tool, whatever ends the tool.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// stop ends the process: SIGTERM, then SIGKILL after 15s.
func (p *process) stop() error {
	p.once.Do(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(15 * time.Second)
		defer t.Stop()
		select {
		case <-p.done:
		case <-t.C:
			p.cmd.Process.Kill()
			<-p.done
			p.err = fmt.Errorf("%s did not stop on SIGTERM within 15s", filepath.Base(p.cmd.Path))
		}
	})
	return p.err
}

// startFetchd runs the fetchd binary as it ships: the default file store,
// the call log on (stderr, read and discarded), telemetry without export,
// budgets and breaker at their defaults; no admin port.
func (s *setup) startFetchd(ctx context.Context) (*gateway, error) {
	dir, err := os.MkdirTemp(s.dir, "fetchd-")
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(conf, []byte(fetchdPolicy()), 0o600); err != nil {
		return nil, err
	}
	cmd := newCommand(s.fetchd, "--listen", "127.0.0.1:0", "--admin", "", "--config", conf,
		"--store", "file:"+filepath.Join(dir, "fetchd.db"), "--drain-timeout", "5s")
	var tail lastLines
	p, addr, err := startProcess(ctx, cmd, cmd.StderrPipe, func(r *bufio.Reader) string {
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return ""
			}
			var l struct {
				Msg  string `json:"msg"`
				GRPC string `json:"grpc"`
			}
			if json.Unmarshal(line, &l) == nil && l.Msg == "fetchd: serving" {
				return l.GRPC // the call log follows, one line per Fetch
			}
			tail.add(string(line))
		}
	})
	if err != nil {
		return nil, fmt.Errorf("fetchd: %w\n%s", err, tail.String())
	}
	return grpcGateway(gwFetchd, p, addr, s.upstream.URL)
}

// startProcess starts cmd without OTEL_* variables and waits up to 30s for
// the address that addr reads from the output pipe opens ("" when the
// output ended without one). The rest of the output is read and dropped
// until the process exits.
func startProcess(ctx context.Context, cmd *exec.Cmd, pipe func() (io.ReadCloser, error), addr func(*bufio.Reader) string) (*process, string, error) {
	cmd.Env = withoutOTEL(os.Environ())
	out, err := pipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	p := &process{cmd: cmd, done: make(chan error, 1)}
	addrc := make(chan string, 1)
	go func() {
		r := bufio.NewReaderSize(out, 64<<10)
		if a := addr(r); a != "" {
			addrc <- a
		}
		io.Copy(io.Discard, r)
		p.done <- cmd.Wait()
		close(p.done)
	}()
	a, err := awaitStart(ctx, addrc, p, 30*time.Second)
	return p, a, err
}

// startForwarder runs `benchcompare forwarder` and reads its address from
// its stdout.
func (s *setup) startForwarder(ctx context.Context) (*gateway, error) {
	cmd := newCommand(s.self[0], append(append([]string(nil), s.self[1:]...), "forwarder", "-listen", "127.0.0.1:0")...)
	cmd.Stderr = os.Stderr
	p, addr, err := startProcess(ctx, cmd, cmd.StdoutPipe, func(r *bufio.Reader) string {
		line, _ := r.ReadString('\n')
		return strings.TrimSpace(line)
	})
	if err != nil {
		return nil, fmt.Errorf("forwarder: %w", err)
	}
	return grpcGateway(gwForwarder, p, addr, s.upstream.URL)
}

func grpcGateway(name string, p *process, addr, upstreamURL string) (*gateway, error) {
	conn, err := dialGRPC(addr)
	if err != nil {
		p.stop()
		return nil, err
	}
	return &gateway{
		name:    name,
		pid:     p.cmd.Process.Pid,
		newCall: grpcCalls(conn, upstreamURL),
		close:   func() error { return errors.Join(conn.Close(), p.stop()) },
	}, nil
}

// awaitStart waits for a gateway's address, its exit or the timeout; on
// failure the process is stopped.
func awaitStart(ctx context.Context, addrc <-chan string, p *process, timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case addr := <-addrc:
		return addr, nil
	case err := <-p.done:
		return "", fmt.Errorf("exited before serving: %v", err)
	case <-t.C:
		p.stop()
		return "", fmt.Errorf("not serving after %s", timeout)
	case <-ctx.Done():
		p.stop()
		return "", ctx.Err()
	}
}

// startHaproxy runs `haproxy -f CFG -db` on a free port, trying another port
// if the one picked was taken meanwhile.
func (s *setup) startHaproxy(ctx context.Context) (*gateway, error) {
	var errs []error
	for range 3 {
		g, err := s.tryHaproxy(ctx)
		if err == nil {
			return g, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func (s *setup) tryHaproxy(ctx context.Context) (*gateway, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	bind := net.JoinHostPort("127.0.0.1", port)
	conf := filepath.Join(s.dir, "haproxy.cfg")
	c := haproxyConfig{Bind: bind, Upstream: strings.TrimPrefix(s.upstream.URL, "http://"), MaxConn: s.maxConn}
	if err := os.WriteFile(conf, []byte(c.render()), 0o600); err != nil {
		return nil, err
	}
	cmd := newCommand(s.haproxy, "-f", conf, "-db")
	var stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan error, 1)}
	go func() {
		p.done <- cmd.Wait()
		close(p.done)
	}()
	// haproxy says nothing when it is ready: it is once its frontend accepts.
	deadline := time.Now().Add(15 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", bind, time.Second)
		if err == nil {
			conn.Close()
			select {
			case err := <-p.done: // the port was someone else's after all
				return nil, fmt.Errorf("haproxy exited: %v\n%s", err, stderr.String())
			default:
			}
			break
		}
		select {
		case err := <-p.done:
			return nil, fmt.Errorf("haproxy exited before serving: %v\n%s", err, stderr.String())
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("haproxy not accepting on %s after 15s\n%s", bind, stderr.String())
		}
	}
	newCall, closeIdle := httpCalls("http://" + bind)
	return &gateway{
		name:    gwHaproxy,
		pid:     cmd.Process.Pid,
		newCall: newCall,
		close:   func() error { closeIdle(); return p.stop() },
	}, nil
}

// freePort is a port on 127.0.0.1 that nothing listened on a moment ago.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port, l.Close()
}

// withoutOTEL is env without OTEL_* variables, so no gateway exports
// telemetry.
func withoutOTEL(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, "OTEL_") {
			out = append(out, kv)
		}
	}
	return out
}

// lastLines keeps the last lines a process printed, for an error message.
type lastLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *lastLines) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, strings.TrimRight(s, "\n"))
	if len(l.lines) > 20 {
		l.lines = l.lines[1:]
	}
}

func (l *lastLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// lockedBuffer is a bytes.Buffer safe for a process's output and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
