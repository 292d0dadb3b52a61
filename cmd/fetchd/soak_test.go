package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
)

// The soak run: mixed traffic through one fetchd binary for FETCHD_SOAK (a
// Go duration, default 60s; `make soak` runs it for longer). It is skipped
// with -short.
const (
	soakDefault  = 60 * time.Second
	soakWorkers  = 32
	soakConns    = 4               // callers' gRPC connections, workers spread over them
	callDeadline = 5 * time.Second // every call's gRPC deadline
	// answerMargin is how much longer than its deadline a call may take to
	// come back before it counts as a call without an answer: gRPC enforces
	// the deadline in the client, so only scheduling on a loaded machine
	// adds to it.
	answerMargin = 2 * time.Second
	// slowTotal is the total timeout of the calls to a slow upstream that
	// answers after slowTimeoutMin or later: they must time out. The gap is
	// wide because on a starved machine fetchd may wake to find both its
	// timer and a late answer ready, and either may win; an answer after
	// seconds is an overrun, not a stall. fetchd cancels the request at its
	// timeout, so the long delay does not hold the worker.
	slowTotal      = 150 * time.Millisecond
	slowTimeoutMin = 2 * time.Second
	// dupDelay is how long the write upstream takes to answer a key sent by
	// two callers at once, so that the second arrives while the first is in
	// flight.
	dupDelay = 100 * time.Millisecond
)

// Resource tolerances, checked once traffic has stopped, the callers'
// connections are closed and the upstreams have closed their idle
// connections, against a baseline taken the same way after a warm-up of the
// same traffic (pools, the store file, metric instruments and per-target
// state all exist by then):
//   - goroutines and open fds: baseline + 10. Leaking one per call, or per
//     connection, over thousands of calls is far above that; the slack covers
//     timers and connections that come and go at rest (the scrape's own
//     keep-alive connection is open at both readings).
//   - heap in use (go_memstats_heap_alloc_bytes): baseline * 1.5 + 4 MiB. A
//     Go heap at rest sits anywhere between its live size and its next GC
//     goal (twice the live size, never below 4 MiB), and nothing forces a GC
//     in an idle fetchd; each scrape allocates, so polling ends with a GC.
//     Keeping 1 KiB per call over a 60s run (tens of thousands of calls)
//     would exceed it.
const (
	goroutineSlack = 10
	fdSlack        = 10
	heapFactor     = 1.5
	heapSlack      = 4 << 20
	settleWithin   = 30 * time.Second
)

func soakDuration(t *testing.T) time.Duration {
	t.Helper()
	v := os.Getenv("FETCHD_SOAK")
	if v == "" {
		return soakDefault
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("FETCHD_SOAK=%q: want a positive Go duration such as 3m", v)
	}
	return d
}

// TestSoak runs closed-loop mixed traffic (successes, 503s, 503-then-200,
// connection resets, slow answers some of which time out, keyed writes some
// of which are sent twice at once or again after they completed) through one
// fetchd process, then checks that every call was answered within its
// deadline, that no keyed write reached the upstream twice, and that
// goroutines, open fds and heap come back to their level after a warm-up.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak run: skipped with -short")
	}
	t.Parallel()
	dur := soakDuration(t)
	warm := min(max(dur/10, 3*time.Second), 10*time.Second)

	up := newSoakUpstream(t)
	writes := newKeyedUpstream(t)
	writes.delay = func(r *http.Request) time.Duration {
		if r.URL.Query().Has("dup") {
			return dupDelay
		}
		return time.Duration(rand.IntN(20)) * time.Millisecond
	}
	// The breaker is off: resets, 503s and timeouts are over a third of the
	// calls to the fault upstream, and an open breaker would turn the rest of
	// the run into fast refusals. The retry budget stays on and refuses some
	// retries, which shows as 503s and resets with fewer attempts.
	policyFile := writePolicy(t, `
version: 1
anonymous: {allow: loopback}
targets:
  - host: "127.0.0.1"
    max_conns: 1000
    protection:
      breaker: {enabled: false}
`)
	store := "file:" + filepath.Join(t.TempDir(), "data", "fetchd.db")
	p := startProcess(t, "--store", store, "--allow-cidr", "127.0.0.0/8", "--config", policyFile,
		"--reload-interval", "0", "--admin", "127.0.0.1:0")
	if p.admin == "" {
		t.Fatal("fetchd logged no admin address; --admin 127.0.0.1:0 did not override --admin \"\"")
	}
	logs := countLogs(t, p)
	mon := newMonitor(t, p)

	seed := rand.Uint64()
	t.Logf("soak: %v after a %v warm-up, %d workers, seed %d", dur, warm, soakWorkers, seed)
	tr := &soakTraffic{t: t, addr: p.addr, up: up, writes: writes, seed: seed}

	tr.run(warm, nil)
	tr.quiesce()
	base := mon.settled(t)
	t.Logf("baseline at rest after warm-up: %v", base)

	var peak resources
	tr.run(dur, func() {
		r, err := mon.read()
		if err == nil {
			peak = peak.max(r)
		}
	})
	tr.quiesce()
	after, ok := mon.within(t, base)
	t.Logf("at rest after the soak:         %v (peak under load: %v)", after, peak)
	if !ok {
		t.Errorf("resources did not return near the baseline within %v: %v, baseline %v (tolerance: goroutines +%d, fds +%d, heap x%.1f + %d MiB)",
			settleWithin, after, base, goroutineSlack, fdSlack, heapFactor, heapSlack>>20)
	}

	tr.report()
	tr.check(writes)

	// fetchd's own accounting of keyed calls agrees with what callers saw.
	m, err := mon.scrape()
	if err != nil {
		t.Fatal(err)
	}
	replayed := m[`fetchd_idempotency_outcomes_total{outcome="replayed"}`]
	claimed := m[`fetchd_idempotency_outcomes_total{outcome="claimed"}`]
	if int(replayed) != tr.replays || int(claimed) != tr.fresh {
		t.Errorf("fetchd counted %v claimed and %v replayed keyed calls; callers saw %d fresh answers and %d replays", claimed, replayed, tr.fresh, tr.replays)
	}
	for _, msg := range []string{"fetchd: panic in handler", "fetch: unmapped error", "fetch: panic in a keyed send", "fetch: idempotency store update failed"} {
		if n := logs.count(msg); n > 0 {
			t.Errorf("fetchd logged %q %d times", msg, n)
		}
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("exit after SIGTERM at rest: %v, want status 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("fetchd did not exit within 30s of SIGTERM at rest")
	}
}

// soakTraffic drives the workers and accounts for every call.
type soakTraffic struct {
	t          *testing.T
	addr       string // fetchd's gRPC address
	up         *soakUpstream
	writes     *keyedUpstream
	seed       uint64
	conns      []*grpc.ClientConn
	generation int // one per run, so keys never repeat across runs

	mu         sync.Mutex
	started    int
	answered   int
	outcomes   map[string]map[string]int // kind -> outcome -> calls
	unexpected []string                  // the first few calls whose outcome was wrong
	unexpN     int
	late       []string // calls answered after deadline + answerMargin
	lateN      int
	slowest    time.Duration
	completed  []keyedCall // keyed writes answered fresh, for repeats
	fresh      int         // keyed calls answered without replay
	replays    int         // keyed calls answered with replayed = true
	dupPairs   int         // keys sent twice at once where both got the same answer
	keyBodies  map[string]string
}

// keyedCall is a keyed write and the answer it first got.
type keyedCall struct {
	req  *fetchdv1.FetchRequest
	body string
}

// The mix of calls, by weight.
var soakMix = []struct {
	kind   string
	weight int
}{
	{"ok", 24},           // GET 200
	{"always503", 8},     // GET 503 on every attempt: the RPC succeeds with 503
	{"flaky", 10},        // GET 503 then 200: 200 after a retry; when the budget refuses it, the 503 (or a reset if it was lost)
	{"reset", 8},         // GET whose connection is closed or reset without an answer: UNAVAILABLE
	{"slow", 8},          // GET answered after 20-80ms: 200
	{"slow_timeout", 6},  // GET answered after 2-3s with a 150ms total timeout: DEADLINE_EXCEEDED
	{"write", 20},        // keyed POST, new key: 201
	{"write_dup", 6},     // keyed POST sent by two callers at once: one 201, one replay
	{"write_repeat", 10}, // a completed keyed POST sent again: replayed
}

func pickKind(r *rand.Rand) string {
	total := 0
	for _, k := range soakMix {
		total += k.weight
	}
	n := r.IntN(total)
	for _, k := range soakMix {
		if n < k.weight {
			return k.kind
		}
		n -= k.weight
	}
	panic("unreachable")
}

// run sends traffic for d from soakWorkers closed-loop workers; sample, when
// not nil, is called about every second meanwhile.
func (tr *soakTraffic) run(d time.Duration, sample func()) {
	t := tr.t
	tr.generation++
	if tr.outcomes == nil {
		tr.outcomes, tr.keyBodies = map[string]map[string]int{}, map[string]string{}
	}
	tr.conns = make([]*grpc.ClientConn, soakConns)
	for i := range tr.conns {
		conn, err := grpc.NewClient(tr.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		tr.conns[i] = conn
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range soakWorkers {
		client := fetchdv1.NewFetchServiceClient(tr.conns[w%soakConns])
		r := rand.New(rand.NewPCG(tr.seed, uint64(tr.generation*1000+w)))
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				tr.one(client, r, fmt.Sprintf("g%d-w%d-%d", tr.generation, w, i))
			}
		})
	}
	end := time.NewTimer(d)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
loop:
	for {
		select {
		case <-end.C:
			break loop
		case <-tick.C:
			if sample != nil {
				sample()
			}
		}
	}
	close(stop)
	// Every worker is in at most one call, bounded by its deadline: they all
	// return within the deadline and the margin, or a call went unanswered.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(callDeadline + answerMargin + 5*time.Second):
		tr.mu.Lock()
		defer tr.mu.Unlock()
		t.Fatalf("workers still waiting after traffic stopped: %d calls started, %d answered", tr.started, tr.answered)
	}
}

// quiesce closes the callers' connections and the upstreams' idle
// connections once the workers have stopped.
func (tr *soakTraffic) quiesce() {
	for _, c := range tr.conns {
		c.Close()
	}
	tr.conns = nil
	tr.up.CloseClientConnections()
	tr.writes.CloseClientConnections()
}

// one makes one call of a kind picked at random (two for write_dup) and
// accounts for it.
func (tr *soakTraffic) one(client fetchdv1.FetchServiceClient, r *rand.Rand, id string) {
	kind := pickKind(r)
	switch kind {
	case "ok":
		tr.call(client, kind, &fetchdv1.FetchRequest{Url: tr.up.URL + "/ok"}, func(resp *fetchdv1.FetchResponse, err error) (string, bool) {
			return outcome(resp, err), err == nil && resp.GetStatus() == 200 && string(resp.GetBody()) == "ok"
		})
	case "always503":
		tr.call(client, kind, &fetchdv1.FetchRequest{Url: tr.up.URL + "/always503"}, func(resp *fetchdv1.FetchResponse, err error) (string, bool) {
			return outcome(resp, err), err == nil && resp.GetStatus() == 503 && len(resp.GetAttempts()) >= 1
		})
	case "flaky":
		tr.call(client, kind, &fetchdv1.FetchRequest{Url: tr.up.URL + "/flaky/" + id}, func(resp *fetchdv1.FetchResponse, err error) (string, bool) {
			if err != nil {
				// The first attempt's connection closed before its answer
				// arrived, and the retry budget (exhausted by the failing
				// traffic) refused the retry. A pooled connection can close
				// under a request: net/http pools a connection as soon as it
				// has read an answer without a body (the 503), a moment
				// before it hands the answer over, and a request that takes
				// it then and is cancelled (a /reset call whose re-send the
				// budget refused, a slow_timeout call's timeout) closes it.
				// That attempt is a reset; nothing else is accepted.
				if ff := failure(err); status.Code(err) == codes.Unavailable && ff.GetRetryStopped() == "retry_budget" &&
					len(ff.GetAttempts()) == 1 && ff.GetAttempts()[0].GetError() == "reset" && ff.GetAttempts()[0].GetStatus() == 0 {
					return "unavailable, reset then retry_budget", true
				}
				return outcome(resp, err), false
			}
			atts := resp.GetAttempts()
			switch resp.GetStatus() {
			case 200: // retried after the 503, or after the 503 was lost (a reset, as above)
				lost := len(atts) == 2 && atts[0].GetStatus() == 0 && atts[0].GetError() == "reset"
				if lost && string(resp.GetBody()) == "recovered" {
					return "200 after reset", true
				}
				return "200 after retry", len(atts) == 2 && atts[0].GetStatus() == 503 && string(resp.GetBody()) == "recovered"
			case 503: // the retry budget refused the retry
				return "503 " + resp.GetRetryStopped(), len(atts) == 1 && resp.GetRetryStopped() == "retry_budget"
			}
			return outcome(resp, err), false
		})
	case "reset":
		tr.call(client, kind, &fetchdv1.FetchRequest{Url: tr.up.URL + "/reset"}, func(resp *fetchdv1.FetchResponse, err error) (string, bool) {
			ff := failure(err)
			if status.Code(err) != codes.Unavailable || ff == nil || len(ff.GetAttempts()) == 0 {
				return outcome(resp, err), false
			}
			for _, a := range ff.GetAttempts() {
				if a.GetError() != "reset" || a.GetStatus() != 0 {
					return "unavailable, attempt " + a.GetError(), false
				}
			}
			// net/http's own re-sends on pooled connections count against
			// max_attempts (3) like fetchd's retries: more is a bug.
			if len(ff.GetAttempts()) > 3 {
				return "unavailable, 4+ reset sends", false
			}
			return "unavailable, 1-3 reset sends", true
		})
	case "slow":
		ms := 20 + r.IntN(60)
		req := &fetchdv1.FetchRequest{Url: fmt.Sprintf("%s/slow/%d", tr.up.URL, ms), Timeouts: &fetchdv1.Timeouts{Total: durationpb.New(3 * time.Second)}}
		tr.call(client, kind, req, func(resp *fetchdv1.FetchResponse, err error) (string, bool) {
			return outcome(resp, err), err == nil && resp.GetStatus() == 200 && string(resp.GetBody()) == "slow"
		})
	case "slow_timeout":
		ms := int(slowTimeoutMin/time.Millisecond) + r.IntN(1000)
		req := &fetchdv1.FetchRequest{Url: fmt.Sprintf("%s/slow/%d", tr.up.URL, ms), Timeouts: &fetchdv1.Timeouts{Total: durationpb.New(slowTotal)}}
		tr.call(client, kind, req, func(resp *fetchdv1.FetchResponse, err error) (string, bool) {
			// The upstream answers after the total timeout: an answer would
			// mean fetchd overran it.
			return outcome(resp, err), status.Code(err) == codes.DeadlineExceeded
		})
	case "write":
		req := writeRequest(tr.writes, id, "")
		tr.call(client, kind, req, func(resp *fetchdv1.FetchResponse, err error) (string, bool) {
			ok := err == nil && resp.GetStatus() == 201 && !resp.GetReplayed() && strings.HasPrefix(string(resp.GetBody()), "created "+id+" #")
			if ok {
				tr.mu.Lock()
				tr.completed = append(tr.completed, keyedCall{req, string(resp.GetBody())})
				tr.mu.Unlock()
			}
			return outcome(resp, err), ok
		})
	case "write_dup":
		req := writeRequest(tr.writes, id, "dup")
		var wg sync.WaitGroup
		answers := make([]*fetchdv1.FetchResponse, 2)
		for i := range answers {
			wg.Go(func() {
				tr.call(client, kind, req, func(resp *fetchdv1.FetchResponse, err error) (string, bool) {
					answers[i] = resp
					// A duplicate in flight waits for the first call's answer
					// (2s by default, twenty times the upstream's delay).
					return outcome(resp, err), err == nil && resp.GetStatus() == 201
				})
			})
		}
		wg.Wait()
		if answers[0] != nil && answers[1] != nil {
			fresh := 0
			for _, a := range answers {
				if !a.GetReplayed() {
					fresh++
				}
			}
			tr.mu.Lock()
			if fresh == 1 && string(answers[0].GetBody()) == string(answers[1].GetBody()) {
				tr.dupPairs++
			} else {
				tr.unexpectedf("write_dup %s: %d fresh answers, bodies %q and %q", id, fresh, answers[0].GetBody(), answers[1].GetBody())
			}
			tr.mu.Unlock()
		}
	case "write_repeat":
		tr.mu.Lock()
		if len(tr.completed) == 0 {
			tr.mu.Unlock()
			return
		}
		prev := tr.completed[r.IntN(len(tr.completed))]
		tr.mu.Unlock()
		tr.call(client, kind, prev.req, func(resp *fetchdv1.FetchResponse, err error) (string, bool) {
			return outcome(resp, err), err == nil && resp.GetReplayed() && resp.GetStatus() == 201 && string(resp.GetBody()) == prev.body
		})
	}
}

func writeRequest(up *keyedUpstream, key, query string) *fetchdv1.FetchRequest {
	u := up.URL + "/charges"
	if query != "" {
		u += "?" + query
	}
	return &fetchdv1.FetchRequest{Url: u, Method: "POST", Body: []byte("amount=" + key), IdempotencyKey: key}
}

// call makes one call with the soak's deadline, and accounts for it: judge
// names its outcome and says whether it is one this kind of call may have.
func (tr *soakTraffic) call(client fetchdv1.FetchServiceClient, kind string, req *fetchdv1.FetchRequest, judge func(*fetchdv1.FetchResponse, error) (string, bool)) {
	tr.mu.Lock()
	tr.started++
	tr.mu.Unlock()
	ctx, cancel := context.WithTimeout(tr.t.Context(), callDeadline)
	start := time.Now()
	resp, err := client.Fetch(ctx, req)
	elapsed := time.Since(start)
	cancel()
	name, ok := judge(resp, err)

	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.answered++
	if tr.outcomes[kind] == nil {
		tr.outcomes[kind] = map[string]int{}
	}
	tr.outcomes[kind][name]++
	tr.slowest = max(tr.slowest, elapsed)
	if elapsed > callDeadline+answerMargin {
		tr.lateN++
		if len(tr.late) < 5 {
			tr.late = append(tr.late, fmt.Sprintf("%s %s: %v", kind, req.GetUrl(), elapsed))
		}
	}
	if !ok {
		tr.unexpectedf("%s %s %s: %s (%v, err %v)", kind, req.GetMethod(), req.GetUrl(), name, elapsed, err)
	}
	if req.GetIdempotencyKey() != "" && err == nil {
		if resp.GetReplayed() {
			tr.replays++
		} else {
			tr.fresh++
		}
		if prev, seen := tr.keyBodies[req.GetIdempotencyKey()]; seen && prev != string(resp.GetBody()) {
			tr.unexpectedf("key %s answered %q and %q", req.GetIdempotencyKey(), prev, resp.GetBody())
		}
		tr.keyBodies[req.GetIdempotencyKey()] = string(resp.GetBody())
	}
}

// unexpectedf records a wrong outcome; tr.mu is held.
func (tr *soakTraffic) unexpectedf(format string, args ...any) {
	tr.unexpN++
	if len(tr.unexpected) < 10 {
		tr.unexpected = append(tr.unexpected, fmt.Sprintf(format, args...))
	}
}

// report logs the calls by kind and outcome.
func (tr *soakTraffic) report() {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "calls: %d started, %d answered, slowest %v (deadline %v)\n", tr.started, tr.answered, tr.slowest.Round(time.Millisecond), callDeadline)
	for _, k := range soakMix {
		outs := tr.outcomes[k.kind]
		names := slices.Sorted(func(yield func(string) bool) {
			for n := range outs {
				if !yield(n) {
					return
				}
			}
		})
		fmt.Fprintf(&b, "  %-13s", k.kind)
		for _, n := range names {
			fmt.Fprintf(&b, " [%s: %d]", n, outs[n])
		}
		b.WriteString("\n")
	}
	resetCalls := 0
	for _, n := range tr.outcomes["reset"] {
		resetCalls += n
	}
	fmt.Fprintf(&b, "reset: %d calls made %d sends to the upstream (any transport re-sends included, bounded by max_attempts and the retry budget)\n", resetCalls, tr.up.resets.Load())
	fmt.Fprintf(&b, "keyed: %d fresh, %d replayed, %d pairs sent at once answered alike; %d keys at the upstream", tr.fresh, tr.replays, tr.dupPairs, tr.writes.keys())
	tr.t.Log(b.String())
}

// check asserts the accounting: every call answered in time with an outcome
// its kind may have, each kind seen with its main outcome, and no keyed write
// at the upstream twice.
func (tr *soakTraffic) check(writes *keyedUpstream) {
	t := tr.t
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.started != tr.answered || tr.started == 0 {
		t.Errorf("%d calls started, %d answered", tr.started, tr.answered)
	}
	if tr.lateN > 0 {
		t.Errorf("%d calls took longer than their %v deadline + %v: %v", tr.lateN, callDeadline, answerMargin, tr.late)
	}
	if tr.unexpN > 0 {
		t.Errorf("%d calls had an outcome their kind may not have; first ones:\n  %s", tr.unexpN, strings.Join(tr.unexpected, "\n  "))
	}
	main := map[string]string{
		"ok": "200", "always503": "503", "flaky": "200 after retry", "slow": "200",
		"slow_timeout": "DeadlineExceeded", "write": "201", "write_dup": "201 replayed", "write_repeat": "201 replayed",
	}
	for kind, want := range main {
		if tr.outcomes[kind][want] == 0 {
			t.Errorf("no %s call ended %q: %v", kind, want, tr.outcomes[kind])
		}
	}
	resets := 0
	for name, n := range tr.outcomes["reset"] {
		if strings.HasSuffix(name, "reset sends") {
			resets += n
		}
	}
	if resets == 0 {
		t.Errorf("no reset call ended UNAVAILABLE with reset attempts: %v", tr.outcomes["reset"])
	}
	if tr.dupPairs == 0 {
		t.Error("no key sent twice at once was answered once fresh and once replayed")
	}

	dups, unkeyed := writes.duplicates()
	if len(dups) > 0 {
		t.Errorf("%d keys reached the upstream more than once: %v", len(dups), dups)
	}
	if unkeyed > 0 {
		t.Errorf("%d keyed writes reached the upstream without the Idempotency-Key header", unkeyed)
	}
	// Every key answered fresh reached the upstream exactly once.
	for key := range tr.keyBodies {
		if n := writes.hits(key); n != 1 {
			t.Errorf("key %s answered by fetchd reached the upstream %d times", key, n)
		}
	}
}

// outcome names a call's outcome: the upstream status (and "replayed"), or
// the gRPC code.
func outcome(resp *fetchdv1.FetchResponse, err error) string {
	if err != nil {
		return status.Code(err).String()
	}
	if resp.GetReplayed() {
		return fmt.Sprintf("%d replayed", resp.GetStatus())
	}
	return strconv.Itoa(int(resp.GetStatus()))
}

// failure returns the FetchFailure in err's status details, or nil.
func failure(err error) *fetchdv1.FetchFailure {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if ff, ok := d.(*fetchdv1.FetchFailure); ok {
			return ff
		}
	}
	return nil
}

// newSoakUpstream serves the GET faults:
//
//	/ok          200 "ok"
//	/always503   503
//	/flaky/{id}  503 the first time an id is asked for, then 200 "recovered"
//	/reset       the connection closed (every other time reset) without an answer
//	/slow/{ms}   200 "slow" after ms milliseconds
func newSoakUpstream(t *testing.T) *soakUpstream {
	u := &soakUpstream{}
	var seen sync.Map
	resets := &u.resets
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ok", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	mux.HandleFunc("GET /always503", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	mux.HandleFunc("GET /flaky/{id}", func(w http.ResponseWriter, r *http.Request) {
		if _, again := seen.LoadOrStore(r.PathValue("id"), true); !again {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		seen.Delete(r.PathValue("id"))
		w.Write([]byte("recovered"))
	})
	mux.HandleFunc("GET /reset", func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		if tc, ok := conn.(*net.TCPConn); ok && resets.Add(1)%2 == 0 {
			tc.SetLinger(0) // close with RST
		}
		conn.Close()
	})
	mux.HandleFunc("GET /slow/{ms}", func(w http.ResponseWriter, r *http.Request) {
		ms, err := strconv.Atoi(r.PathValue("ms"))
		if err != nil {
			http.Error(w, "bad delay", http.StatusBadRequest)
			return
		}
		timer := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer timer.Stop()
		select {
		case <-timer.C:
			w.Write([]byte("slow"))
		case <-r.Context().Done():
		}
	})
	u.Server = httptest.NewServer(mux)
	t.Cleanup(u.Close)
	return u
}

// soakUpstream is the GET fault server; resets counts the requests to /reset
// it received.
type soakUpstream struct {
	*httptest.Server
	resets atomic.Int64
}

// keyedUpstream accepts keyed writes: it answers 201 with a body naming the
// key and the order the write arrived in ("created KEY #N", so a replay is
// told from a new send), counts arrivals per Idempotency-Key header, and can
// hold arrivals until released.
type keyedUpstream struct {
	*httptest.Server
	// delay, when set before traffic starts, is how long an arrival waits
	// before it is answered.
	delay func(*http.Request) time.Duration

	mu      sync.Mutex
	count   map[string]int
	seq     int
	unkeyed int
	gate    *gate
}

// gate holds the next n arrivals at the upstream until it is opened.
type gate struct {
	n    int
	held chan string // the key of each held arrival
	open chan struct{}
}

func newKeyedUpstream(t *testing.T) *keyedUpstream {
	u := &keyedUpstream{count: map[string]int{}}
	u.Server = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.Close)
	return u
}

func (u *keyedUpstream) serve(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Idempotency-Key")
	u.mu.Lock()
	u.seq++
	n := u.seq
	if key == "" {
		u.unkeyed++
	}
	u.count[key]++
	var g *gate
	if u.gate != nil && u.gate.n > 0 {
		g = u.gate
		g.n--
	}
	u.mu.Unlock()
	if g != nil {
		g.held <- key
		select {
		case <-g.open:
		case <-r.Context().Done():
		}
	}
	if u.delay != nil {
		if d := u.delay(r); d > 0 {
			timer := time.NewTimer(d)
			select {
			case <-timer.C:
			case <-r.Context().Done():
			}
			timer.Stop()
		}
	}
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, "created %s #%d", key, n)
}

// hold makes the next n arrivals wait until open is called; held receives
// the key of each.
func (u *keyedUpstream) hold(n int) (held <-chan string, open func()) {
	g := &gate{n: n, held: make(chan string, n), open: make(chan struct{})}
	u.mu.Lock()
	u.gate = g
	u.mu.Unlock()
	var once sync.Once
	return g.held, func() { once.Do(func() { close(g.open) }) }
}

// hits is how many times key reached the upstream.
func (u *keyedUpstream) hits(key string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.count[key]
}

func (u *keyedUpstream) keys() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.count)
}

// duplicates lists the keys that arrived more than once (with their
// counts), and counts arrivals without a key.
func (u *keyedUpstream) duplicates() (map[string]int, int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	dups := map[string]int{}
	for k, n := range u.count {
		if n > 1 && k != "" {
			dups[k] = n
		}
	}
	return dups, u.unkeyed
}

// logCounter counts fetchd's log lines by msg.
type logCounter struct {
	mu sync.Mutex
	n  map[string]int
}

// countLogs reads p's log lines until the test ends.
func countLogs(t *testing.T, p *process) *logCounter {
	c := &logCounter{n: map[string]int{}}
	stop := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(stop); <-done })
	go func() {
		defer close(done)
		for {
			select {
			case msg := <-p.msgs:
				c.mu.Lock()
				c.n[msg]++
				c.mu.Unlock()
			case <-stop:
				return
			}
		}
	}()
	return c
}

func (c *logCounter) count(msg string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[msg]
}

// resources is what a fetchd process holds.
type resources struct {
	goroutines int
	fds        int
	heap       float64 // go_memstats_heap_alloc_bytes
}

func (r resources) String() string {
	return fmt.Sprintf("goroutines %d, open fds %d, heap %.1f MiB", r.goroutines, r.fds, r.heap/(1<<20))
}

func (r resources) max(o resources) resources {
	return resources{max(r.goroutines, o.goroutines), max(r.fds, o.fds), max(r.heap, o.heap)}
}

// monitor reads a fetchd process's resources from its /metrics and /proc.
type monitor struct {
	p      *process
	client *http.Client
}

func newMonitor(t *testing.T, p *process) *monitor {
	m := &monitor{p: p, client: &http.Client{Timeout: 5 * time.Second}}
	t.Cleanup(m.client.CloseIdleConnections)
	return m
}

// scrape returns the samples of /metrics by name with labels, as written.
func (m *monitor) scrape() (map[string]float64, error) {
	resp, err := m.client.Get("http://" + m.p.admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

func (m *monitor) read() (resources, error) {
	s, err := m.scrape()
	if err != nil {
		return resources{}, err
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", m.p.cmd.Process.Pid))
	if err != nil {
		return resources{}, err
	}
	g, okG := s["go_goroutines"]
	h, okH := s["go_memstats_heap_alloc_bytes"]
	if !okG || !okH {
		return resources{}, errors.New("/metrics has no go_goroutines or go_memstats_heap_alloc_bytes")
	}
	return resources{goroutines: int(g), fds: len(fds), heap: h}, nil
}

// settled polls until goroutines and fds read the same four times in a row
// (a second), and returns that reading: the process at rest.
func (m *monitor) settled(t *testing.T) resources {
	t.Helper()
	r, stable := m.poll(t, 250*time.Millisecond, 3, func(resources) bool { return true })
	if !stable {
		t.Fatalf("fetchd did not come to rest within %v: last %v", settleWithin, r)
	}
	return r
}

// within polls until the process is at rest (goroutines and fds read the
// same five times in a row) within the tolerances of base, and returns the
// last reading and whether it was within them.
func (m *monitor) within(t *testing.T, base resources) (resources, bool) {
	t.Helper()
	near := func(r resources) bool {
		return r.goroutines <= base.goroutines+goroutineSlack && r.fds <= base.fds+fdSlack && r.heap <= base.heap*heapFactor+heapSlack
	}
	r, _ := m.poll(t, 100*time.Millisecond, 4, near)
	return r, near(r)
}

// poll reads the process every interval until a reading satisfies ok with
// goroutines and fds read the same `same` more times in a row, or until
// settleWithin has passed; it returns the last reading and whether it was
// such a reading.
func (m *monitor) poll(t *testing.T, interval time.Duration, same int, ok func(resources) bool) (resources, bool) {
	t.Helper()
	deadline := time.Now().Add(settleWithin)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last resources
	repeats := 0
	for {
		r, err := m.read()
		if err != nil {
			t.Fatal(err)
		}
		if r.goroutines == last.goroutines && r.fds == last.fds {
			repeats++
		} else {
			repeats = 0
		}
		last = r
		done := repeats >= same && ok(r)
		if done || time.Now().After(deadline) {
			return r, done
		}
		<-tick.C
	}
}
