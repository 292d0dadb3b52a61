package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
	"github.com/fetchd/fetchd/internal/nettest"
)

// startMain runs a real fetchd on 127.0.0.1:0 with the memory store and
// loopback allowed, and returns it with a gRPC connection to it. The caller
// closes it.
func startMain(t *testing.T) (*Main, *grpc.ClientConn) {
	t.Helper()
	return startWith(t, false, func(m *Main) { m.Admin = "127.0.0.1:0" })
}

// startWith runs a real fetchd on 127.0.0.1:0 (memory store, loopback
// allowed, no admin port, logs discarded) after edit has changed its
// settings, and dials it. With closeAtEnd the test's cleanup closes it.
func startWith(t testing.TB, closeAtEnd bool, edit func(*Main)) (*Main, *grpc.ClientConn) {
	t.Helper()
	m := NewMain()
	m.Listen, m.Admin, m.Store = "127.0.0.1:0", "", "memory:"
	m.AllowCIDRs = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	m.DrainTimeout = 10 * time.Second
	m.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	if edit != nil {
		edit(m)
	}
	if err := m.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	if closeAtEnd {
		t.Cleanup(func() { m.Close() })
	}
	conn, err := grpc.NewClient(m.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return m, conn
}

func TestEndToEnd(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("hello " + r.URL.Query().Get("name")))
	}))
	defer up.Close()
	m, conn := startMain(t)
	defer m.Close()

	resp, err := fetchdv1.NewFetchServiceClient(conn).Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL + "/?name=fetchd"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetStatus() != 200 || string(resp.GetBody()) != "hello fetchd" {
		t.Fatalf("resp = %v", resp)
	}

	h, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{Service: "fetchd.v1.FetchService"})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", h, err)
	}

	// Reflection lets grpcurl work with no proto files.
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	rr, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range rr.GetListServicesResponse().GetService() {
		found = found || s.GetName() == "fetchd.v1.FetchService"
	}
	if !found {
		t.Fatalf("reflection lists %v", rr.GetListServicesResponse().GetService())
	}

	adm, err := http.Get("http://" + m.AdminAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	adm.Body.Close()
	if adm.StatusCode != 200 {
		t.Fatalf("admin /healthz = %d", adm.StatusCode)
	}
}

func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{})
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		w.Write([]byte("finished"))
	}))
	defer up.Close()
	m, conn := startMain(t)
	m.DrainTimeout = time.Hour // a drain held open by the watch stream would hang the test
	client := fetchdv1.NewFetchServiceClient(conn)

	watchCtx, stopWatch := context.WithCancel(t.Context())
	defer stopWatch()
	watch, err := healthpb.NewHealthClient(conn).Watch(watchCtx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if h, err := watch.Recv(); err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health before shutdown = %v, %v", h, err)
	}

	inflight := make(chan error, 1)
	go func() {
		resp, err := client.Fetch(context.Background(), &fetchdv1.FetchRequest{Url: up.URL})
		if err == nil && string(resp.GetBody()) != "finished" {
			t.Errorf("in-flight body = %q", resp.GetBody())
		}
		inflight <- err
	}()
	<-arrived

	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()

	// Health turns NOT_SERVING and new calls are refused while the in-flight one drains.
	admin := "http://" + m.AdminAddr() + "/healthz"
	// The watcher hears NOT_SERVING or has its stream ended by the drain;
	// either way the stream ends and cannot hold the drain open.
	for {
		h, err := watch.Recv()
		if err != nil {
			break
		}
		if h.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("health after Close began = %v", h)
		}
	}
	if resp, err := http.Get(admin); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("admin health while draining = %d", resp.StatusCode)
		}
	}
	_, err = client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("new call while draining: %v, want UNAVAILABLE", err)
	}

	close(release)
	if err := <-inflight; err != nil {
		t.Fatalf("in-flight call: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"--allow-cidr", "10.0.0.0/8", "--allow-cidr", "::1/128"}, ""},
		{[]string{"--allow-cidr", "10.0.0.1/8"}, "host bits"},
		{[]string{"--allow-cidr", "nonsense"}, "not a CIDR"},
		{[]string{"--config", "no-such-policy.yaml"}, "--config"},
		{[]string{"--config", "testdata/bad_version.yaml"}, "version"},
		{[]string{"stray"}, "unexpected argument"},
		{[]string{"--drain-timeout", "0s"}, "must be positive"},
		{[]string{"--gc-min-heap-mib", "-1"}, "between 0 and"},
		{[]string{"--gc-min-heap-mib", "0"}, ""},
		{[]string{"--stream-workers", "-1"}, "between 0 and"},
		{[]string{"--stream-workers", "100000"}, "between 0 and"},
		{[]string{"--stream-workers", "0"}, ""},
	}
	for _, tt := range tests {
		m := NewMain()
		err := m.ParseFlags(tt.args, io.Discard)
		if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%v: err = %v, want %q", tt.args, err, tt.wantErr)
		}
	}
	m := NewMain()
	if err := m.ParseFlags([]string{"--allow-cidr", "10.0.0.0/8", "--allow-cidr", "::1/128"}, io.Discard); err != nil || len(m.AllowCIDRs) != 2 {
		t.Fatalf("AllowCIDRs = %v, %v", m.AllowCIDRs, err)
	}
	if m.Listen != DefaultListen || m.Admin != DefaultAdmin || m.Store != DefaultStore || !m.DirectHTTP || m.StreamWorkers != DefaultStreamWorkers {
		t.Fatalf("defaults: %+v", m)
	}
	if err := m.ParseFlags([]string{"--direct-http=false"}, io.Discard); err != nil || m.DirectHTTP {
		t.Fatalf("--direct-http=false: DirectHTTP %v, %v", m.DirectHTTP, err)
	}
}

// Both transports of plain-HTTP upstreams serve calls end to end, and keep
// the connection for the next call.
func TestDirectHTTP(t *testing.T) {
	t.Parallel()
	for _, direct := range []bool{true, false} {
		t.Run(fmt.Sprint(direct), func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			peers := map[string]int{}
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				peers[r.RemoteAddr]++
				mu.Unlock()
				body, _ := io.ReadAll(r.Body)
				w.Write(append([]byte(r.Method+" "), body...))
			}))
			defer up.Close()
			var logs syncBuffer
			_, conn := startWith(t, true, func(m *Main) {
				m.DirectHTTP = direct
				m.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
			})
			if want := fmt.Sprintf(`"direct_http":%v`, direct); !strings.Contains(logs.String(), want) {
				t.Errorf("the serving line does not say %s:\n%s", want, logs.String())
			}
			client := fetchdv1.NewFetchServiceClient(conn)
			for _, req := range []*fetchdv1.FetchRequest{
				{Url: up.URL},
				{Url: up.URL, Method: "POST", Body: []byte("x=1"), IdempotencyKey: "direct-" + fmt.Sprint(direct)},
			} {
				resp, err := client.Fetch(t.Context(), req)
				want := req.GetMethod() + " " + string(req.GetBody())
				if req.GetMethod() == "" {
					want = "GET "
				}
				if err != nil || resp.GetStatus() != 200 || string(resp.GetBody()) != want {
					t.Fatalf("%s: %v, %v; want %q", req.GetMethod(), resp, err, want)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if len(peers) != 1 {
				t.Errorf("the upstream saw %d connections (%v), want one kept for both calls", len(peers), peers)
			}
		})
	}
}

// goroutineRecorder is a FetchService that notes, for each Fetch, the
// goroutine it ran on and whether that goroutine is one grpc-go keeps
// (grpc.NumStreamWorkers), then answers it with the real service.
type goroutineRecorder struct {
	fetchdv1.FetchServiceServer
	mu   sync.Mutex
	ids  []string // "goroutine N" of each call
	kept int      // calls that ran on a kept goroutine
}

func (g *goroutineRecorder) Fetch(ctx context.Context, req *fetchdv1.FetchRequest) (*fetchdv1.FetchResponse, error) {
	buf := make([]byte, 64<<10)
	stack := string(buf[:runtime.Stack(buf, false)])
	g.mu.Lock()
	g.ids = append(g.ids, stack[:strings.Index(stack, " [")])
	if strings.Contains(stack, "grpc.(*Server).serverWorker") {
		g.kept++
	}
	g.mu.Unlock()
	return g.FetchServiceServer.Fetch(ctx, req)
}

// With --stream-workers, calls run on goroutines grpc-go keeps and reuses;
// with 0, each call gets a goroutine of its own.
func TestStreamWorkers(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(up.Close) // after the parallel subtests
	for _, workers := range []int{2, 0} {
		t.Run(fmt.Sprint(workers), func(t *testing.T) {
			t.Parallel()
			rec := &goroutineRecorder{}
			_, conn := startWith(t, true, func(m *Main) {
				m.StreamWorkers = workers
				m.wrapService = func(s fetchdv1.FetchServiceServer) fetchdv1.FetchServiceServer {
					rec.FetchServiceServer = s
					return rec
				}
			})
			client := fetchdv1.NewFetchServiceClient(conn)
			const calls = 6
			for range calls {
				if resp, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL}); err != nil || resp.GetStatus() != 200 {
					t.Fatalf("Fetch: %v, %v", resp, err)
				}
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			distinct := map[string]bool{}
			for _, id := range rec.ids {
				distinct[id] = true
			}
			if workers == 0 {
				// A goroutine ID is never reused by the runtime.
				if rec.kept != 0 || len(distinct) != calls {
					t.Errorf("without workers: %d of %d calls on a kept goroutine, %d goroutines; want 0 and %d", rec.kept, len(rec.ids), len(distinct), calls)
				}
				return
			}
			// A call that arrives before its predecessor's goroutine is back
			// waiting gets a new one, so not every call need be on a worker;
			// the calls that were shared at most `workers` goroutines.
			if rec.kept == 0 || len(distinct) > workers+calls-rec.kept {
				t.Errorf("with %d workers: %d of %d calls on a kept goroutine, %d goroutines (%v)", workers, rec.kept, len(rec.ids), len(distinct), rec.ids)
			}
		})
	}
}

func TestBadStoreIsRefusedAtStart(t *testing.T) {
	t.Parallel()
	m := NewMain()
	m.Listen, m.Admin, m.Store = "127.0.0.1:0", "", "postgres://nope"
	err := m.Run(t.Context())
	m.Close()
	if err == nil || !strings.Contains(err.Error(), "--store") {
		t.Fatalf("Run = %v", err)
	}
}

// The tests below run the real binary.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func fetchdBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fetchd-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "fetchd")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = &buildError{err, string(out)}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

// process is a running fetchd binary.
type process struct {
	cmd  *exec.Cmd
	addr string
	// admin is the admin HTTP address from the "fetchd: serving" line, ""
	// when disabled (startProcessWith passes --admin "" unless a later
	// --admin in args overrides it).
	admin string
	done  chan error
	// msgs receives the msg of every log line after "fetchd: serving"
	// (dropped when nobody reads and the buffer is full).
	msgs chan string
}

// startProcess starts the binary with args plus --listen 127.0.0.1:0 and
// waits for its "serving" log line to learn the address.
func startProcess(t *testing.T, args ...string) *process {
	t.Helper()
	return startProcessWith(t, nil, args...)
}

// startProcessWith is startProcess with edit applied to the command first.
func startProcessWith(t *testing.T, edit func(*exec.Cmd), args ...string) *process {
	t.Helper()
	cmd := exec.Command(fetchdBinary(t), append([]string{"--listen", "127.0.0.1:0", "--admin", ""}, args...)...)
	if edit != nil {
		edit(cmd)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, done: make(chan error, 1), msgs: make(chan string, 100)}
	addrc := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		serving := false
		for sc.Scan() {
			var line struct {
				Msg   string `json:"msg"`
				GRPC  string `json:"grpc"`
				Admin string `json:"admin"`
			}
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue
			}
			switch {
			case line.Msg == "fetchd: serving":
				serving = true
				addrc <- [2]string{line.GRPC, line.Admin}
			case serving:
				select {
				case p.msgs <- line.Msg:
				default:
				}
			}
		}
		close(addrc)
		p.done <- cmd.Wait()
	}()
	addrs, ok := <-addrc
	if !ok {
		t.Fatalf("fetchd exited before serving: %v", <-p.done)
	}
	p.addr, p.admin = addrs[0], addrs[1]
	t.Cleanup(func() { cmd.Process.Kill() })
	return p
}

func (p *process) client(t *testing.T) fetchdv1.FetchServiceClient {
	conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return fetchdv1.NewFetchServiceClient(conn)
}

func TestSIGTERMExitsZero(t *testing.T) {
	t.Parallel()
	p := startProcess(t, "--store", "memory:")
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-p.done; err != nil {
		t.Fatalf("exit after SIGTERM: %v, want status 0", err)
	}
}

// TestSIGTERMPastDrainTimeoutExitsZero: a call that outlives the drain
// timeout is cancelled, and an open health watch does not hold the drain;
// the process still exits 0.
func TestSIGTERMPastDrainTimeoutExitsZero(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done()
	}))
	defer up.Close()
	p := startProcess(t, "--store", "memory:", "--allow-cidr", "127.0.0.0/8", "--drain-timeout", "100ms")
	conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	watch, err := healthpb.NewHealthClient(conn).Watch(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}
	callErr := make(chan error, 1)
	go func() {
		_, err := fetchdv1.NewFetchServiceClient(conn).Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL})
		callErr <- err
	}()
	<-arrived
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-p.done; err != nil {
		t.Fatalf("exit after SIGTERM past the drain timeout: %v, want status 0", err)
	}
	if err := <-callErr; err == nil {
		t.Fatal("the call cut off by the drain timeout succeeded")
	}
}

// TestKeyedSurvivesKill9: a completed key survives kill -9 of the real
// binary and a restart on the same file store: the retry is replayed.
func TestKeyedSurvivesKill9(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte("charge ch_42"))
	}))
	defer up.Close()
	store := "file:" + filepath.Join(t.TempDir(), "data", "fetchd.db")
	req := &fetchdv1.FetchRequest{Url: up.URL + "/charges", Method: "POST", Body: []byte("amount=42"), IdempotencyKey: "order-42"}

	p := startProcess(t, "--store", store, "--allow-cidr", "127.0.0.0/8")
	first, err := p.client(t).Fetch(t.Context(), req)
	if err != nil || first.GetReplayed() {
		t.Fatalf("first: %v %v", first, err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done

	q := startProcess(t, "--store", store, "--allow-cidr", "127.0.0.0/8")
	again, err := q.client(t).Fetch(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !again.GetReplayed() || again.GetStatus() != 201 || string(again.GetBody()) != "charge ch_42" {
		t.Fatalf("after kill -9 and restart: %v", again)
	}
	if hits.Load() != 1 {
		t.Fatalf("upstream hits = %d, want 1", hits.Load())
	}
}

// TestStartsWithRedisDown: fetchd starts while its Redis is unreachable
// (keyed calls fail closed until it is back) and says so in the log.
func TestStartsWithRedisDown(t *testing.T) {
	t.Parallel()
	dead := nettest.RefusedAddr(t)
	var logs syncBuffer
	m := NewMain()
	m.Listen, m.Admin, m.Store = "127.0.0.1:0", "", "redis://"+dead+"/0"
	m.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	if err := m.Run(t.Context()); err != nil {
		t.Fatalf("Run with Redis down: %v", err)
	}
	defer m.Close()
	if !strings.Contains(logs.String(), "idempotency store check failed") {
		t.Fatalf("no warning about the store in the log:\n%s", logs.String())
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestFileStoreInUseIsRefusedAtStart: a second fetchd on the same file store
// fails to start with a clear error (and Close is safe after it).
func TestFileStoreInUseIsRefusedAtStart(t *testing.T) {
	t.Parallel()
	store := "file:" + filepath.Join(t.TempDir(), "fetchd.db")
	first := NewMain()
	first.Listen, first.Admin, first.Store = "127.0.0.1:0", "", store
	first.Logger = slog.New(slog.DiscardHandler)
	if err := first.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer first.Close()

	second := NewMain()
	second.Listen, second.Admin, second.Store = "127.0.0.1:0", "", store
	second.Logger = slog.New(slog.DiscardHandler)
	err := second.Run(t.Context())
	if closeErr := second.Close(); closeErr != nil {
		t.Errorf("Close after a failed Run: %v", closeErr)
	}
	if err == nil || !strings.Contains(err.Error(), "--store") {
		t.Fatalf("Run on a file store in use = %v, want a --store error", err)
	}
	t.Log(err)
}
