package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
	"github.com/fetchd/fetchd/internal/redistest"
)

// Fault runs: the real binary under keyed load while its Redis is killed and
// restarted, while it is killed itself, and while it is told to stop.

// progress is a counter that tests wait on without polling.
type progress struct {
	mu     sync.Mutex
	counts map[string]int
	ch     chan struct{}
}

func newProgress() *progress {
	return &progress{counts: map[string]int{}, ch: make(chan struct{}, 1)}
}

func (p *progress) add(name string) {
	p.mu.Lock()
	p.counts[name]++
	p.mu.Unlock()
	select {
	case p.ch <- struct{}{}:
	default:
	}
}

func (p *progress) get(name string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[name]
}

// waitUntil waits until cond holds, re-checking it after every add, or fails
// t after within.
func (p *progress) waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	timeout := time.NewTimer(within)
	defer timeout.Stop()
	for !cond() {
		select {
		case <-p.ch:
		case <-timeout.C:
			p.mu.Lock()
			defer p.mu.Unlock()
			t.Fatalf("waiting for %s: not within %v (progress %v)", what, within, p.counts)
		}
	}
}

// waitHeld waits for n arrivals held at the upstream and returns their keys.
func waitHeld(t *testing.T, held <-chan string, n int) []string {
	t.Helper()
	keys := make([]string, 0, n)
	timeout := time.After(10 * time.Second)
	for len(keys) < n {
		select {
		case k := <-held:
			keys = append(keys, k)
		case <-timeout:
			t.Fatalf("only %d of %d writes reached the upstream within 10s", len(keys), n)
		}
	}
	return keys
}

// callResult is one call's answer.
type callResult struct {
	resp *fetchdv1.FetchResponse
	err  error
}

func (r callResult) String() string { return outcome(r.resp, r.err) }

func fetchKeyed(client fetchdv1.FetchServiceClient, req *fetchdv1.FetchRequest) callResult {
	ctx, cancel := context.WithTimeout(context.Background(), callDeadline)
	defer cancel()
	resp, err := client.Fetch(ctx, req)
	return callResult{resp, err}
}

// fetchAll sends the request of every key once, 8 at a time, and returns
// each key's result.
func fetchAll(client fetchdv1.FetchServiceClient, reqs map[string]*fetchdv1.FetchRequest) map[string]callResult {
	out := map[string]callResult{}
	var mu sync.Mutex
	work := make(chan string)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for key := range work {
				r := fetchKeyed(client, reqs[key])
				mu.Lock()
				out[key] = r
				mu.Unlock()
			}
		})
	}
	for key := range reqs {
		work <- key
	}
	close(work)
	wg.Wait()
	return out
}

// nothingSent reports a refusal that says nothing was sent upstream: no
// attempt in its FetchFailure, if it has one.
func nothingSent(err error) bool {
	ff := failure(err)
	return strings.Contains(status.Convert(err).Message(), "nothing was sent") && len(ff.GetAttempts()) == 0
}

// TestRedisRestartMidKeyedTraffic: keyed writes run while fetchd's Redis is
// killed (SIGKILL) and restarted on the same port and append-only file. No
// key reaches the upstream twice; every call is answered with the key's one
// upstream answer (fresh or replayed), or refused having sent nothing, or,
// for a key whose outcome fetchd could not record, ABORTED while its claim is
// held; and keyed calls succeed again once Redis is back.
func TestRedisRestartMidKeyedTraffic(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t, redistest.Persistent...)
	up := newKeyedUpstream(t)
	up.delay = func(*http.Request) time.Duration { return time.Duration(rand.IntN(5)) * time.Millisecond }
	policyFile := writePolicy(t, `
version: 1
anonymous: {allow: loopback}
idempotency: {in_flight_wait: 200ms}
`)
	p := startProcess(t, "--store", "redis://"+rs.Addr+"/0", "--allow-cidr", "127.0.0.0/8", "--config", policyFile, "--reload-interval", "0")
	logs := countLogs(t, p)
	client := p.client(t)

	// Each worker sends a new key, then the same request again once the
	// first call has its answer.
	type keyCalls struct {
		req          *fetchdv1.FetchRequest
		phase        int32 // of the first call: 0 Redis up, 1 Redis killed, 2 Redis restarted
		first, retry callResult
	}
	var (
		phase   atomic.Int32
		stopped atomic.Bool
		mu      sync.Mutex
		keys    = map[string]*keyCalls{}
		prog    = newProgress()
		wg      sync.WaitGroup
	)
	for w := range 8 {
		wg.Go(func() {
			for i := 0; !stopped.Load(); i++ {
				key := fmt.Sprintf("redis-w%d-%d", w, i)
				kc := &keyCalls{req: writeRequest(up, key, ""), phase: phase.Load()}
				kc.first = fetchKeyed(client, kc.req)
				kc.retry = fetchKeyed(client, kc.req)
				mu.Lock()
				keys[key] = kc
				mu.Unlock()
				switch {
				case kc.first.err == nil && !kc.first.resp.GetReplayed():
					prog.add(fmt.Sprintf("fresh in phase %d", kc.phase))
				case status.Code(kc.first.err) == codes.Unavailable:
					prog.add(fmt.Sprintf("unavailable in phase %d", kc.phase))
				default:
					prog.add(fmt.Sprintf("%v in phase %d", kc.first, kc.phase))
				}
			}
		})
	}
	defer func() { stopped.Store(true); wg.Wait() }()

	prog.waitUntil(t, 20*time.Second, "40 keyed writes with Redis up", func() bool { return prog.get("fresh in phase 0") >= 40 })
	// Three writes are held at the upstream while Redis is killed, so fetchd
	// has their answers but cannot record them.
	held, open := up.hold(3)
	heldKeys := waitHeld(t, held, 3)
	phase.Store(1)
	rs.Kill()
	open()
	prog.waitUntil(t, 20*time.Second, "the held writes' answers and 20 refusals with Redis down", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, k := range heldKeys {
			if keys[k] == nil {
				return false
			}
		}
		return prog.get("unavailable in phase 1") >= 20
	})
	rs.Restart(t)
	phase.Store(2)
	prog.waitUntil(t, 20*time.Second, "40 keyed writes after Redis came back", func() bool { return prog.get("fresh in phase 2") >= 40 })
	stopped.Store(true)
	wg.Wait()

	// Every key is sent once more now that Redis is back.
	reqs := make(map[string]*fetchdv1.FetchRequest, len(keys))
	for key, k := range keys {
		reqs[key] = k.req
	}
	final := fetchAll(client, reqs)

	rc := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer rc.Close()
	// inFlight reads the key's record the way the Redis store lays it out
	// (see idempotency.Redis): "0" in its done field is a claim whose
	// outcome was never recorded.
	inFlight := func(key string) bool {
		done, err := rc.HGet(context.Background(), fmt.Sprintf("fetchd:idem:v1:%d:%s:%s", len("anonymous"), "anonymous", key), "done").Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatalf("reading key %s from Redis: %v", key, err)
		}
		return done == "0"
	}

	dups, unkeyed := up.duplicates()
	if len(dups) > 0 || unkeyed > 0 {
		t.Errorf("keys that reached the upstream more than once: %v; writes without a key: %d", dups, unkeyed)
	}
	tally := map[string]int{}
	var heldOutcomes []string
	for key, kc := range keys {
		hits := up.hits(key)
		var freshBody string
		calls := []struct {
			name string
			r    callResult
		}{{"first", kc.first}, {"retry", kc.retry}, {"final", final[key]}}
		for _, c := range calls {
			if c.r.err == nil && !c.r.resp.GetReplayed() {
				if freshBody != "" {
					t.Errorf("key %s: two fresh answers", key)
				}
				freshBody = string(c.r.resp.GetBody())
			}
		}
		for _, c := range calls {
			r := c.r
			tally[c.name+" "+r.String()]++
			switch code := status.Code(r.err); {
			case r.err == nil && r.resp.GetStatus() == 201 && !r.resp.GetReplayed():
				if hits != 1 || !strings.HasPrefix(freshBody, "created "+key+" #") {
					t.Errorf("key %s: %s call answered %q but the key reached the upstream %d times", key, c.name, r.resp.GetBody(), hits)
				}
			case r.err == nil && r.resp.GetStatus() == 201:
				if string(r.resp.GetBody()) != freshBody || hits != 1 {
					t.Errorf("key %s: %s call replayed %q; the fresh answer was %q and the upstream saw the key %d times", key, c.name, r.resp.GetBody(), freshBody, hits)
				}
			case code == codes.Unavailable:
				if !nothingSent(r.err) {
					t.Errorf("key %s: %s call UNAVAILABLE without saying nothing was sent: %v (details %v)", key, c.name, r.err, failure(r.err))
				}
			case code == codes.Aborted && c.name != "first":
				// The key's claim was held: its outcome is unknown to fetchd,
				// or its answer, delivered while Redis was down, was still
				// being recorded (fetchd retries that until the lease ends).
				if !inFlight(key) && (freshBody == "" || hits != 1) {
					t.Errorf("key %s: %s call ABORTED but its record is not an open claim: %v", key, c.name, r.err)
				}
			default:
				t.Errorf("key %s: %s call: %v %v", key, c.name, r.resp, r.err)
			}
		}
		if freshBody == "" && hits != 0 {
			t.Errorf("key %s reached the upstream %d times but no call was answered with it: %v / %v / %v", key, hits, kc.first, kc.retry, final[key])
		}
		for _, hk := range heldKeys {
			if hk == key {
				heldOutcomes = append(heldOutcomes, fmt.Sprintf("%s: first %v, retry %v, after restart %v (claim open in Redis: %v)", key, kc.first, kc.retry, final[key], inFlight(key)))
			}
		}
	}
	if n := prog.get("fresh in phase 2"); n == 0 {
		t.Error("no keyed write succeeded after Redis came back")
	}
	t.Logf("%d keys, %d at the upstream; calls by outcome: %v", len(keys), up.keys(), tally)
	t.Logf("writes answered while Redis was being killed: %s", strings.Join(heldOutcomes, "; "))
	t.Logf("fetchd logged %q %d times", "fetch: idempotency store update failed", logs.count("fetch: idempotency store update failed"))
}

// TestKill9MidLoadFileStore: fetchd is killed with SIGKILL under keyed load
// and restarted on the same file store. Every key whose call completed is
// replayed with its answer and reached the upstream once; a key whose call
// the kill cut short reaches the upstream at most once in all.
func TestKill9MidLoadFileStore(t *testing.T) {
	t.Parallel()
	up := newKeyedUpstream(t)
	up.delay = func(*http.Request) time.Duration { return time.Duration(rand.IntN(5)) * time.Millisecond }
	args := []string{"--store", "file:" + filepath.Join(t.TempDir(), "data", "fetchd.db"), "--allow-cidr", "127.0.0.0/8"}
	p := startProcess(t, args...)
	client := p.client(t)

	var (
		stopped   atomic.Bool
		mu        sync.Mutex
		completed = map[string]callResult{}
		cut       = map[string]callResult{}
		reqs      = map[string]*fetchdv1.FetchRequest{}
		prog      = newProgress()
		wg        sync.WaitGroup
	)
	const workers = 12
	for w := range workers {
		wg.Go(func() {
			for i := 0; !stopped.Load(); i++ {
				key := fmt.Sprintf("kill-w%d-%d", w, i)
				req := writeRequest(up, key, "")
				r := fetchKeyed(client, req)
				mu.Lock()
				reqs[key] = req
				if r.err == nil {
					completed[key] = r
				} else {
					cut[key] = r
				}
				mu.Unlock()
				prog.add("answered")
			}
		})
	}
	defer func() { stopped.Store(true); wg.Wait() }()

	prog.waitUntil(t, 20*time.Second, "150 keyed writes", func() bool { return prog.get("answered") >= 150 })
	// Three writes are at the upstream, unanswered, when fetchd dies.
	held, open := up.hold(3)
	heldKeys := waitHeld(t, held, 3)
	stopped.Store(true)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	open()
	wg.Wait()

	for key, r := range completed {
		if r.resp.GetStatus() != 201 || r.resp.GetReplayed() || !strings.HasPrefix(string(r.resp.GetBody()), "created "+key+" #") {
			t.Errorf("key %s before the kill: %v", key, r.resp)
		}
	}
	for _, k := range heldKeys {
		if _, ok := cut[k]; !ok {
			t.Errorf("key %s was held at the upstream when fetchd was killed, yet its call completed", k)
		}
	}
	if len(cut) > workers {
		t.Errorf("%d calls failed; at most one per worker (%d) can have been in flight at the kill: %v", len(cut), workers, cut)
	}

	sentBefore := map[string]int{}
	for key := range cut {
		sentBefore[key] = up.hits(key)
	}
	q := startProcess(t, args...)
	qc := q.client(t)
	again := fetchAll(qc, reqs)

	for key, first := range completed {
		r := again[key]
		if r.err != nil || !r.resp.GetReplayed() || r.resp.GetStatus() != first.resp.GetStatus() || string(r.resp.GetBody()) != string(first.resp.GetBody()) {
			t.Errorf("completed key %s after the restart: %v %v, want the replay of %q", key, r.resp, r.err, first.resp.GetBody())
		}
		if n := up.hits(key); n != 1 {
			t.Errorf("completed key %s reached the upstream %d times", key, n)
		}
	}
	var cutOutcomes []string
	for key, first := range cut {
		r := again[key]
		switch n := up.hits(key); {
		case n > 1:
			t.Errorf("key %s cut by the kill reached the upstream %d times", key, n)
		case r.err == nil && !r.resp.GetReplayed() && n != 1:
			t.Errorf("key %s cut by the kill answered fresh after the restart but reached the upstream %d times", key, n)
		}
		switch code := status.Code(r.err); {
		case r.err == nil && r.resp.GetStatus() == 201 && strings.HasPrefix(string(r.resp.GetBody()), "created "+key+" #"):
		case code == codes.Aborted:
			// Its claim outlived fetchd: held until the lease runs out.
		default:
			t.Errorf("key %s cut by the kill, sent again after the restart: %v %v", key, r.resp, r.err)
		}
		cutOutcomes = append(cutOutcomes, fmt.Sprintf("%s (at the upstream %d time(s) before the restart, cut with %s): %v", key, sentBefore[key], status.Code(first.err), r))
	}
	dups, unkeyed := up.duplicates()
	if len(dups) > 0 || unkeyed > 0 {
		t.Errorf("keys that reached the upstream more than once: %v; writes without a key: %d", dups, unkeyed)
	}
	t.Logf("%d keys completed before the kill, all replayed after the restart; %d cut by the kill, sent again after the restart: %s",
		len(completed), len(cut), strings.Join(cutOutcomes, "; "))
}

// TestSIGTERMUnderLoad: SIGTERM with 200 calls in flight (half of them keyed
// writes): new calls are refused with UNAVAILABLE and never reach the
// upstream, every call in flight finishes with its answer, and the process
// exits 0.
func TestSIGTERMUnderLoad(t *testing.T) {
	t.Parallel()
	const n = 200
	var (
		arrived    atomic.Int64
		allArrived = make(chan struct{})
		release    = make(chan struct{})
		probes     atomic.Int64
	)
	mux := http.NewServeMux()
	mux.HandleFunc("/slow/{i}", func(w http.ResponseWriter, r *http.Request) {
		if arrived.Add(1) == n {
			close(allArrived)
		}
		select {
		case <-release:
			fmt.Fprintf(w, "done %s", r.PathValue("i"))
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/probe", func(w http.ResponseWriter, r *http.Request) {
		probes.Add(1)
		w.Write([]byte("probe"))
	})
	up := httptest.NewServer(mux)
	defer up.Close()
	releaseAll := sync.OnceFunc(func() { close(release) })
	defer releaseAll() // lets the handlers end should the test fail early
	policyFile := writePolicy(t, `
version: 1
anonymous: {allow: loopback}
targets:
  - host: "127.0.0.1"
    max_conns: 1000
`)
	p := startProcess(t, "--store", "file:"+filepath.Join(t.TempDir(), "fetchd.db"), "--allow-cidr", "127.0.0.0/8",
		"--config", policyFile, "--reload-interval", "0", "--drain-timeout", "30s")
	conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := fetchdv1.NewFetchServiceClient(conn)

	results := make(chan error, n)
	for i := range n {
		req := &fetchdv1.FetchRequest{Url: fmt.Sprintf("%s/slow/%d", up.URL, i)}
		if i%2 == 1 {
			req.Method, req.IdempotencyKey, req.Body = "POST", fmt.Sprintf("term-%d", i), []byte("n=1")
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			resp, err := client.Fetch(ctx, req)
			if err == nil && (resp.GetStatus() != 200 || string(resp.GetBody()) != fmt.Sprintf("done %d", i) || resp.GetReplayed()) {
				err = fmt.Errorf("call %d answered %v", i, resp)
			}
			results <- err
		}()
	}
	select {
	case <-allArrived:
	case <-time.After(30 * time.Second):
		t.Fatalf("only %d of %d calls reached the upstream within 30s", arrived.Load(), n)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	// Calls made while the signal is being handled may still be served;
	// from the first refusal on, every new call is refused.
	probe := func(c fetchdv1.FetchServiceClient) error {
		ctx, cancel := context.WithTimeout(context.Background(), callDeadline)
		defer cancel()
		_, err := c.Fetch(ctx, &fetchdv1.FetchRequest{Url: up.URL + "/probe"})
		return err
	}
	served := 0
	refusedBy := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		err := probe(client)
		if status.Code(err) == codes.Unavailable {
			t.Logf("first refusal after %d calls served: %v", served, err)
			break
		}
		if err != nil {
			t.Fatalf("new call after SIGTERM: %v, want an answer or UNAVAILABLE", err)
		}
		served++
		if time.Now().After(refusedBy) {
			t.Fatalf("new calls still served 10s after SIGTERM (%d served)", served)
		}
		<-tick.C
	}
	for range 5 {
		if err := probe(client); status.Code(err) != codes.Unavailable {
			t.Fatalf("new call after a refusal: %v, want UNAVAILABLE", err)
		}
	}
	fresh, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if err := probe(fetchdv1.NewFetchServiceClient(fresh)); status.Code(err) != codes.Unavailable {
		t.Fatalf("new call on a new connection while draining: %v, want UNAVAILABLE", err)
	}
	if got := probes.Load(); got != int64(served) {
		t.Errorf("the upstream saw %d probe calls; %d were served", got, served)
	}

	releaseAll()
	var failed []error
	timeout := time.After(30 * time.Second)
	for range n {
		select {
		case err := <-results:
			if err != nil {
				failed = append(failed, err)
			}
		case <-timeout:
			t.Fatalf("calls in flight not answered within 30s of their release")
		}
	}
	if len(failed) > 0 {
		t.Errorf("%d of %d calls in flight at SIGTERM failed; first: %v", len(failed), n, failed[0])
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("exit after SIGTERM under load: %v, want status 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("fetchd did not exit within 30s of its calls finishing")
	}
}

// TestAnswerRecordedWhenStoreReturns: a keyed write whose answer fetchd gets
// while its Redis is down is answered at once and recorded once Redis is
// back. Sending the key again replays that answer (after ABORTED answers
// while the record has not landed) within the claim's lease, after which an
// unrecorded answer would be sent again; the key reaches the upstream once.
func TestAnswerRecordedWhenStoreReturns(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t, redistest.Persistent...)
	up := newKeyedUpstream(t)
	p := startProcess(t, "--store", "redis://"+rs.Addr+"/0", "--allow-cidr", "127.0.0.0/8")
	logs := countLogs(t, p)
	client := p.client(t)
	req := writeRequest(up, "charge-1", "")
	req.Timeouts = &fetchdv1.Timeouts{Total: durationpb.New(time.Second)} // a lease of 11s

	held, open := up.hold(1)
	first := make(chan callResult, 1)
	go func() { first <- fetchKeyed(client, req) }()
	waitHeld(t, held, 1)
	claimed := time.Now()
	rs.Kill()
	open()
	r := <-first
	if r.err != nil || r.resp.GetStatus() != 201 || r.resp.GetReplayed() || !strings.HasPrefix(string(r.resp.GetBody()), "created charge-1 #") {
		t.Fatalf("the write answered with Redis down: %v %v", r.resp, r.err)
	}
	rs.Restart(t)

	// Send the key again until it is replayed; past the lease an unrecorded
	// answer would be sent upstream again instead. Until the record lands
	// the key is ABORTED (claim held), or UNAVAILABLE with nothing sent while
	// fetchd reconnects to Redis.
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var aborted, unavailable int
	for {
		ctx, cancel := context.WithTimeout(context.Background(), callDeadline)
		resp, err := client.Fetch(ctx, req)
		cancel()
		switch code := status.Code(err); {
		case code == codes.Aborted:
			aborted++
		case code == codes.Unavailable && nothingSent(err):
			unavailable++
		default:
			if err != nil || !resp.GetReplayed() || resp.GetStatus() != 201 || string(resp.GetBody()) != string(r.resp.GetBody()) {
				t.Fatalf("key sent again %v after its claim (after %d ABORTED, %d UNAVAILABLE): %v %v; want the replay of %q",
					time.Since(claimed).Round(time.Millisecond), aborted, unavailable, resp, err, r.resp.GetBody())
			}
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not replayed %v after the claim (%d ABORTED, %d UNAVAILABLE): %v", time.Since(claimed).Round(time.Millisecond), aborted, unavailable, err)
		}
		<-tick.C
	}
	replayedAfter := time.Since(claimed)

	// The record is complete and keeps being replayed.
	resp, err := client.Fetch(t.Context(), req)
	if err != nil || !resp.GetReplayed() || string(resp.GetBody()) != string(r.resp.GetBody()) {
		t.Fatalf("key sent a third time: %v %v; want the replay of %q", resp, err, r.resp.GetBody())
	}
	if n := up.hits("charge-1"); n != 1 {
		t.Fatalf("key charge-1 reached the upstream %d times", n)
	}

	const recorded = "fetch: idempotency store update succeeded on retry"
	for logs.count(recorded) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("fetchd did not log %q", recorded)
		}
		<-tick.C
	}
	if n := logs.count("fetch: idempotency store update abandoned; outcome recorded nowhere; key re-sendable after its lease"); n != 0 {
		t.Errorf("fetchd logged giving up %d times", n)
	}
	t.Logf("replayed %v after the claim, after %d ABORTED and %d UNAVAILABLE answers", replayedAfter.Round(time.Millisecond), aborted, unavailable)
}
