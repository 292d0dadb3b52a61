package examples

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// nodeDir is the Node.js example, relative to this package.
const nodeDir = "node"

// testToken is the bearer token of the caller the test's policy file names.
const testToken = "node-example-test-token"

var traceIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// TestNodeClient runs examples/node/fetch.js against the real fetchd binary:
// npm ci, go build, start fetchd, then one node process per call.
func TestNodeClient(t *testing.T) {
	t.Parallel()
	requireTools(t, "node", "npm")

	// npm ci and go build are independent; run them side by side.
	bin := filepath.Join(t.TempDir(), "fetchd")
	var wg sync.WaitGroup
	var npmErr, buildErr error
	wg.Go(func() { npmErr = npmCI(t.Context()) })
	wg.Go(func() { buildErr = goBuild(t.Context(), bin) })
	wg.Wait()
	if npmErr != nil {
		t.Fatal(npmErr)
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}

	fd := startFetchd(t, bin,
		"--listen", "127.0.0.1:0", "--admin", "", "--store", "memory:", "--allow-cidr", "127.0.0.0/8",
		"--config", writePolicy(t), "--reload-interval", "0")

	t.Run("GET retries a 503", func(t *testing.T) {
		t.Parallel()
		var hits atomic.Int32
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if got := r.Header.Get("Accept"); got != "application/json" {
				t.Errorf("upstream got Accept %q, want the client's application/json", got)
			}
			if r.Header.Get("Idempotency-Key") == "" {
				t.Error("upstream got no Idempotency-Key; the client sends a random key by default")
			}
			if hits.Add(1) == 1 {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, `{"hello":"from upstream"}`)
		}))
		defer up.Close()

		out := runNode(t, fd.addr, up.URL+"/greeting")
		if out.exit != 0 || out.Error != nil {
			t.Fatalf("exit %d, error %+v, want a response", out.exit, out.Error)
		}
		if out.Status != 200 || out.Body != `{"hello":"from upstream"}` {
			t.Errorf("status %d body %q, want 200 and the upstream body", out.Status, out.Body)
		}
		if len(out.Attempts) != 2 || out.Attempts[0].Status != 503 || out.Attempts[1].Status != 200 || out.Attempts[1].Number != 2 {
			t.Errorf("attempts = %+v, want #1 503, #2 200", out.Attempts)
		}
		if out.Attempts[1].Backoff == "" {
			t.Errorf("attempt 2 has no backoff: %+v", out.Attempts[1])
		}
		if !traceIDPattern.MatchString(out.TraceID) {
			t.Errorf("traceId = %q, want 32 lower-case hex digits", out.TraceID)
		}
		if out.Replayed || out.Policy == nil || *out.Policy != "default" || out.Caller != "anonymous" {
			t.Errorf("replayed %v policy %v caller %q, want a fresh call under default as anonymous", out.Replayed, out.Policy, out.Caller)
		}
		if n := hits.Load(); n != 2 {
			t.Errorf("upstream hits = %d, want 2", n)
		}
	})

	t.Run("keyed POST is replayed", func(t *testing.T) {
		t.Parallel()
		var hits atomic.Int32
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			if r.Method != http.MethodPost || string(body) != "amount=42" || r.Header.Get("Idempotency-Key") != "order-42" {
				t.Errorf("upstream got %s body %q key %q, want POST amount=42 order-42", r.Method, body, r.Header.Get("Idempotency-Key"))
			}
			if hits.Add(1) == 1 {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, "charge ch_42")
		}))
		defer up.Close()
		env := []string{"FETCH_METHOD=POST", "FETCH_BODY=amount=42", "FETCH_IDEMPOTENCY_KEY=order-42"}

		first := runNode(t, fd.addr, up.URL+"/charges", env...)
		if first.exit != 0 || first.Status != 200 || first.Body != "charge ch_42" || first.Replayed {
			t.Fatalf("first call: %+v, want 200 charge ch_42, not replayed", first)
		}
		if len(first.Attempts) != 2 || first.Attempts[0].Status != 503 {
			t.Errorf("first call attempts = %+v, want the keyed POST retried after its 503", first.Attempts)
		}

		again := runNode(t, fd.addr, up.URL+"/charges", env...)
		if again.exit != 0 || !again.Replayed || again.Status != 200 || again.Body != "charge ch_42" {
			t.Fatalf("second call: %+v, want the stored 200 replayed", again)
		}
		if len(again.Attempts) != 0 || again.Policy != nil {
			t.Errorf("replay: attempts %+v policy %v, want none (nothing ran)", again.Attempts, again.Policy)
		}
		if n := hits.Load(); n != 2 {
			t.Errorf("upstream hits = %d, want 2 (the replay must not reach it)", n)
		}

		// The same key with another body is a different request.
		other := runNode(t, fd.addr, up.URL+"/charges", "FETCH_METHOD=POST", "FETCH_BODY=amount=43", "FETCH_IDEMPOTENCY_KEY=order-42")
		if other.exit != 1 || other.Error == nil || other.Error.Code != 9 || other.Error.CodeName != "FAILED_PRECONDITION" {
			t.Errorf("key reused with another body: exit %d error %+v, want FAILED_PRECONDITION (9)", other.exit, other.Error)
		}
	})

	t.Run("refused port is UNAVAILABLE with the attempts", func(t *testing.T) {
		t.Parallel()
		out := runNode(t, fd.addr, "http://"+closedAddr(t)+"/")
		if out.exit != 1 || out.Error == nil {
			t.Fatalf("exit %d, output %+v, want a gRPC error", out.exit, out)
		}
		e := out.Error
		if e.Code != 14 || e.CodeName != "UNAVAILABLE" || e.Message == "" {
			t.Errorf("error %+v, want UNAVAILABLE (14) with a message", e)
		}
		f := e.Failure
		if f == nil {
			t.Fatal("no FetchFailure decoded from grpc-status-details-bin")
		}
		// The default policy: 3 attempts.
		if len(f.Attempts) != 3 || f.RetryStopped != "max_attempts" {
			t.Errorf("failure attempts %+v stopped %q, want 3 attempts, max_attempts", f.Attempts, f.RetryStopped)
		}
		for i, a := range f.Attempts {
			if a.Number != i+1 || a.Status != 0 || a.Error != "connect_refused" || a.Detail == "" {
				t.Errorf("attempt %d = %+v, want number %d, connect_refused with a detail", i, a, i+1)
			}
		}
		if !traceIDPattern.MatchString(f.TraceID) || f.Policy != "default" {
			t.Errorf("failure traceId %q policy %q, want 32 hex digits and default", f.TraceID, f.Policy)
		}
	})

	t.Run("bearer token names the caller", func(t *testing.T) {
		t.Parallel()
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "" {
				t.Error("the caller's bearer token reached the upstream")
			}
			io.WriteString(w, "ok")
		}))
		defer up.Close()
		out := runNode(t, fd.addr, up.URL, "FETCHD_TOKEN="+testToken)
		if out.exit != 0 || out.Status != 200 || out.Caller != "node-example" {
			t.Errorf("exit %d status %d caller %q error %+v, want 200 as node-example", out.exit, out.Status, out.Caller, out.Error)
		}
	})

	t.Run("unknown token is UNAUTHENTICATED", func(t *testing.T) {
		t.Parallel()
		var hits atomic.Int32
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
		defer up.Close()
		out := runNode(t, fd.addr, up.URL, "FETCHD_TOKEN=not-"+testToken)
		if out.exit != 1 || out.Error == nil || out.Error.Code != 16 || out.Error.CodeName != "UNAUTHENTICATED" || out.Error.Failure != nil {
			t.Errorf("exit %d error %+v, want UNAUTHENTICATED (16) without a FetchFailure", out.exit, out.Error)
		}
		if n := hits.Load(); n != 0 {
			t.Errorf("upstream hits = %d, want 0", n)
		}
	})
}

// requireTools skips the test when a tool is missing, or fails it when
// CI=true: CI must run the examples.
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not on PATH, and CI=true: CI must run the example clients; install Node.js 20 or later", tool)
			}
			t.Skipf("%s is not on PATH: install Node.js 20 or later to run the Node example against fetchd", tool)
		}
	}
}

// npmCI installs the locked dependencies of the Node example. Install
// scripts are not run: none of the dependencies needs one.
func npmCI(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts")
	cmd.Dir = nodeDir
	if out, err := cmd.CombinedOutput(); err != nil {
		return &cmdError{"npm ci in examples/node", err, out}
	}
	return nil
}

// goBuild builds cmd/fetchd into bin.
func goBuild(ctx context.Context, bin string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "../cmd/fetchd").CombinedOutput(); err != nil {
		return &cmdError{"go build ../cmd/fetchd", err, out}
	}
	return nil
}

type cmdError struct {
	what string
	err  error
	out  []byte
}

func (e *cmdError) Error() string { return e.what + ": " + e.err.Error() + "\n" + string(e.out) }
func (e *cmdError) Unwrap() error { return e.err }

// writePolicy writes a policy file naming one caller, node-example, with
// testToken (the file holds only its SHA-256), and keeping anonymous calls
// from loopback, as the embedded default does.
func writePolicy(t *testing.T) string {
	t.Helper()
	sum := sha256.Sum256([]byte(testToken))
	policy := "version: 1\n" +
		"callers:\n" +
		"  - name: node-example\n" +
		"    tokens: [\"sha256:" + hex.EncodeToString(sum[:]) + "\"]\n" +
		"anonymous:\n" +
		"  allow: loopback\n"
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// command is a running binary whose stderr is kept for the test log.
type command struct {
	cmd  *exec.Cmd
	addr string     // what ready found in its stderr
	done chan error // receives Wait's result once it has exited
	logs func() string
}

// startCommand starts bin and waits until ready finds an address in a line
// of its stderr (the process must say where it listens). If the process
// exits first, the test fails with its stderr.
func startCommand(t *testing.T, name, bin string, ready func(line []byte) (string, bool), args ...string) *command {
	t.Helper()
	// Not CommandContext: the test's context ends before its cleanups run,
	// and the cleanups decide how the process is stopped.
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var logMu sync.Mutex
	var log bytes.Buffer
	addrc := make(chan string, 1)
	c := &command{cmd: cmd, done: make(chan error, 1), logs: func() string {
		logMu.Lock()
		defer logMu.Unlock()
		return log.String()
	}}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logMu.Lock()
			log.Write(sc.Bytes())
			log.WriteByte('\n')
			logMu.Unlock()
			if addr, ok := ready(sc.Bytes()); ok {
				addrc <- addr
			}
		}
		close(addrc)
		c.done <- cmd.Wait()
	}()
	addr, ok := <-addrc
	if !ok {
		t.Fatalf("%s exited before listening: %v\n%s", name, <-c.done, c.logs())
	}
	c.addr = addr
	return c
}

// fetchd is a running fetchd binary.
type fetchd struct {
	addr string
}

// startFetchd starts the binary and waits for its "fetchd: serving" log line
// to learn the gRPC address. At the end of the test it sends SIGTERM and
// expects a clean exit; on failure the test log gets fetchd's stderr.
func startFetchd(t *testing.T, bin string, args ...string) *fetchd {
	t.Helper()
	c := startCommand(t, "fetchd", bin, func(b []byte) (string, bool) {
		var line struct {
			Msg  string `json:"msg"`
			GRPC string `json:"grpc"`
		}
		ok := json.Unmarshal(b, &line) == nil && line.Msg == "fetchd: serving"
		return line.GRPC, ok
	}, args...)
	t.Cleanup(func() {
		if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Errorf("SIGTERM: %v", err)
		}
		select {
		case err := <-c.done:
			if err != nil {
				t.Errorf("fetchd exit after SIGTERM: %v, want status 0", err)
			}
		case <-time.After(time.Minute):
			c.cmd.Process.Kill()
			t.Errorf("fetchd still running a minute after SIGTERM; killed")
			<-c.done
		}
		if t.Failed() {
			t.Logf("fetchd stderr:\n%s", c.logs())
		}
	})
	return &fetchd{addr: c.addr}
}

// nodeOutput is what fetch.js prints: a response summary, or an error.
type nodeOutput struct {
	exit int

	Status   int       `json:"status"`
	Body     string    `json:"body"`
	Attempts []attempt `json:"attempts"`
	Replayed bool      `json:"replayed"`
	TraceID  string    `json:"traceId"`
	Policy   *string   `json:"policy"` // null on a replay
	Caller   string    `json:"caller"`

	Error *struct {
		Code     int    `json:"code"`
		CodeName string `json:"codeName"`
		Message  string `json:"message"`
		Failure  *struct {
			Attempts     []attempt `json:"attempts"`
			RetryStopped string    `json:"retryStopped"`
			TraceID      string    `json:"traceId"`
			Policy       string    `json:"policy"`
		} `json:"failure"`
	} `json:"error"`
}

type attempt struct {
	Number  int    `json:"number"`
	Status  int    `json:"status"`
	Error   string `json:"error"`
	Detail  string `json:"detail"`
	Backoff string `json:"backoff"`
}

// runNode runs `node fetch.js url` against fetchd at addr with env added to
// a clean slate of the script's variables, and decodes what it prints. Exit
// status 0 and 1 (a gRPC error) are results; anything else fails the test.
func runNode(t *testing.T, addr, url string, env ...string) nodeOutput {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "fetch.js", url)
	cmd.Dir = nodeDir
	// Later entries win: the caller's own FETCH* settings must not leak in.
	cmd.Env = append(os.Environ(), "FETCHD_ADDR="+addr, "FETCHD_TOKEN=", "FETCH_URL=",
		"FETCH_METHOD=", "FETCH_BODY=", "FETCH_IDEMPOTENCY_KEY=")
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var out nodeOutput
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit) && exit.ExitCode() == 1:
		out.exit = 1
	default:
		t.Fatalf("node fetch.js %s: %v\nstdout:\n%s\nstderr:\n%s", url, err, stdout.Bytes(), stderr.Bytes())
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("node fetch.js %s printed no JSON summary: %v\nstdout:\n%s\nstderr:\n%s", url, err, stdout.Bytes(), stderr.Bytes())
	}
	return out
}

// closedAddr returns a loopback address with nothing listening on it.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
