package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
	"github.com/fetchd/fetchd/internal/idempotency"
)

// These tests run in synctest bubbles: the backoff between store update
// retries and the claim's lease run on the bubble's fake clock, so an 11s
// lease passes at once. The upstream is a real httptest server started
// outside the bubble; it closes every connection after its answer, so that
// no idle connection of the bubble's outbound client sits in a network read
// (which would keep the fake clock from moving).

const (
	msgUpdateFailed = "fetch: idempotency store update failed"
	msgRetried      = "fetch: idempotency store update succeeded on retry"
	msgAbandoned    = "fetch: idempotency store update abandoned; outcome recorded nowhere; key re-sendable after its lease"
	msgReleaseLeft  = "fetch: idempotency store update abandoned; key held until its lease expires"
)

// errStoreDown is what the Redis store returns when Redis is unreachable.
var errStoreDown = fmt.Errorf("%w: redis: %w", idempotency.ErrUnavailable, syscall.ECONNREFUSED)

// flakyStore is a real memory store whose Complete and Release fail with
// errStoreDown the first completeFails and releaseFails times (-1: always).
// beforeFail, when set, runs on the memory store before a Complete fails;
// with applyRelease, a failing Release is applied first (its reply is lost).
type flakyStore struct {
	*idempotency.Memory
	beforeFail   func(ctx context.Context, key idempotency.Key, token uint64, resp idempotency.Response)
	applyRelease bool

	mu                          sync.Mutex
	completeFails, releaseFails int
	completes, releases         int
	called                      chan struct{} // a signal after every Complete or Release
}

func newFlakyStore(t *testing.T, completeFails, releaseFails int) *flakyStore {
	m := idempotency.NewMemory()
	t.Cleanup(func() { m.Close() })
	return &flakyStore{Memory: m, completeFails: completeFails, releaseFails: releaseFails, called: make(chan struct{}, 1)}
}

// fail counts a call and reports whether it is to fail.
func (f *flakyStore) fail(count *int, fails *int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	*count++
	select {
	case f.called <- struct{}{}:
	default:
	}
	if *fails == 0 {
		return false
	}
	if *fails > 0 {
		*fails--
	}
	return true
}

func (f *flakyStore) Complete(ctx context.Context, key idempotency.Key, token uint64, resp idempotency.Response) error {
	if f.fail(&f.completes, &f.completeFails) {
		if f.beforeFail != nil {
			f.beforeFail(ctx, key, token, resp)
		}
		return errStoreDown
	}
	return f.Memory.Complete(ctx, key, token, resp)
}

func (f *flakyStore) Release(ctx context.Context, key idempotency.Key, token uint64) error {
	if f.fail(&f.releases, &f.releaseFails) {
		if f.applyRelease {
			f.Memory.Release(ctx, key, token)
		}
		return errStoreDown
	}
	return f.Memory.Release(ctx, key, token)
}

func (f *flakyStore) counts() (completes, releases int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.completes, f.releases
}

// waitCompletes waits until Complete has been called at least n times, or
// fails t after a minute of the bubble's time.
func (f *flakyStore) waitCompletes(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(time.Minute)
	for c, _ := f.counts(); c < n; c, _ = f.counts() {
		select {
		case <-f.called:
		case <-timeout:
			t.Fatalf("Complete called %d times in a minute, want %d", c, n)
		}
	}
}

// logLine is one record the service logged.
type logLine struct {
	at    time.Time
	level slog.Level
	msg   string
	attrs map[string]string
}

// logRecorder is a slog.Handler that keeps every record; a test waits for a
// message with wait.
type logRecorder struct {
	mu    sync.Mutex
	lines []logLine
	added chan struct{}
}

func newLogRecorder() *logRecorder { return &logRecorder{added: make(chan struct{}, 1)} }

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	l := logLine{at: rec.Time, level: rec.Level, msg: rec.Message, attrs: map[string]string{}}
	rec.Attrs(func(a slog.Attr) bool {
		l.attrs[a.Key] = a.Value.String()
		return true
	})
	r.mu.Lock()
	r.lines = append(r.lines, l)
	r.mu.Unlock()
	select {
	case r.added <- struct{}{}:
	default:
	}
	return nil
}

// wait returns the first line logged with msg, waiting for it; it fails t
// after a minute of the bubble's time, longer than any lease here.
func (r *logRecorder) wait(t *testing.T, msg string) logLine {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		if l, ok := r.find(msg); ok {
			return l
		}
		select {
		case <-r.added:
		case <-timeout:
			t.Fatalf("%q not logged within a minute; logged: %v", msg, r.summary(t, ""))
		}
	}
}

func (r *logRecorder) find(msg string) (logLine, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.lines {
		if l.msg == msg {
			return l, true
		}
	}
	return logLine{}, false
}

// summary lists the lines logged as "LEVEL msg" and fails t if any of them
// names key (unless key is empty): keys are never logged.
func (r *logRecorder) summary(t *testing.T, key string) []string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, l := range r.lines {
		out = append(out, l.level.String()+" "+l.msg)
		for k, v := range l.attrs {
			if key != "" && strings.Contains(v, key) {
				t.Errorf("log line %q names the key in %s=%q", l.msg, k, v)
			}
		}
	}
	return out
}

// settleService returns a Service over store that logs to a recorder; it
// must be called inside the bubble. Shutdown runs when the bubble ends.
func settleService(t *testing.T, store idempotency.Store, opts ...Option) (*Service, *logRecorder) {
	logs := newLogRecorder()
	svc := New(newClient(t), store, append([]Option{WithLogger(slog.New(logs))}, opts...)...)
	t.Cleanup(func() {
		if err := svc.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return svc, logs
}

// closingUpstream answers 201 with body and closes the connection.
func closingUpstream(t *testing.T, body string) *upstream {
	return newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte(body))
	})
}

func anonKey(id string) idempotency.Key {
	return idempotency.Key{Scope: idempotency.AnonymousScope, ID: id}
}

// wantLines fails t unless got, the lines logged, is want.
func wantLines(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("logged:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

// TestKeyedAnswerRecordedWhenStoreRecovers: the store fails the first three
// Completes. The caller is answered after the first, before any retry; the
// answer is recorded in the background with backoff, and a repeat replays it
// without a second send.
func TestKeyedAnswerRecordedWhenStoreRecovers(t *testing.T) {
	t.Parallel()
	up := closingUpstream(t, "charged")
	synctest.Test(t, func(t *testing.T) {
		store := newFlakyStore(t, 3, 0)
		svc, logs := settleService(t, store)
		key := uniqueKey(t)
		req := keyedPost(up.URL, key, "amount=10")

		start := time.Now()
		resp, err := svc.Fetch(t.Context(), req)
		answered := time.Since(start)
		if err != nil || resp.GetStatus() != 201 || resp.GetReplayed() || string(resp.GetBody()) != "charged" {
			t.Fatalf("first call: resp=%v err=%v", resp, err)
		}
		if c, _ := store.counts(); c != 1 || answered >= settleBackoff/2 {
			t.Fatalf("answered after %d Complete calls and %v; want 1 call, before the first retry (%v)", c, answered, settleBackoff/2)
		}

		ok := logs.wait(t, msgRetried)
		// Three jittered waits: 25-50ms, 50-100ms, 100-200ms.
		if took := ok.at.Sub(start); took < 175*time.Millisecond || took > 350*time.Millisecond {
			t.Errorf("recorded %v after the call; want the three backoffs' 175ms to 350ms", took)
		}
		if c, _ := store.counts(); c != 4 || ok.attrs["attempts"] != "4" || ok.attrs["update"] != "complete" {
			t.Errorf("Complete called %d times, logged %v; want 4 attempts of complete", c, ok.attrs)
		}
		e, err := store.Get(t.Context(), anonKey(key))
		if err != nil || !e.Completed || e.Response.Status != 201 || string(e.Response.Body) != "charged" {
			t.Fatalf("record after the retries: %+v %v", e, err)
		}

		again, err := svc.Fetch(t.Context(), req)
		if err != nil || !again.GetReplayed() || string(again.GetBody()) != "charged" {
			t.Fatalf("repeat: resp=%v err=%v", again, err)
		}
		if n := up.hits.Load(); n != 1 {
			t.Errorf("upstream hits = %d, want 1", n)
		}
		warn, _ := logs.find(msgUpdateFailed)
		if !strings.Contains(warn.attrs["error"], "unavailable") {
			t.Errorf("first failure logged with error %q", warn.attrs["error"])
		}
		wantLines(t, logs.summary(t, key), "WARN "+msgUpdateFailed, "INFO "+msgRetried)
	})
}

// TestKeyedStoreDownUntilLeaseEnd: a store that never comes back is retried
// until the claim's lease (total timeout + leaseMargin) ends, and not after;
// the give-up is logged, and the claim is left for the lease to free.
func TestKeyedStoreDownUntilLeaseEnd(t *testing.T) {
	t.Parallel()
	up := closingUpstream(t, "charged")
	synctest.Test(t, func(t *testing.T) {
		store := newFlakyStore(t, -1, 0)
		svc, logs := settleService(t, store, inFlightWait(t, 100*time.Millisecond))
		key := uniqueKey(t)
		req := keyedPost(up.URL, key, "amount=10")
		req.Timeouts = &fetchdv1.Timeouts{Total: durationpb.New(time.Second)}
		lease := time.Second + leaseMargin

		start := time.Now()
		resp, err := svc.Fetch(t.Context(), req)
		if err != nil || resp.GetStatus() != 201 || resp.GetReplayed() {
			t.Fatalf("first call: resp=%v err=%v", resp, err)
		}
		// Meanwhile a repeat is refused: the outcome is not in the store.
		_, err = svc.Fetch(t.Context(), req)
		wantCode(t, err, codes.Aborted, "in flight")

		gaveUp := logs.wait(t, msgAbandoned)
		if took := gaveUp.at.Sub(start); took > lease || took < lease-settleMaxBackoff {
			t.Errorf("gave up %v after the claim; want at its lease end, %v", took, lease)
		}
		completes, _ := store.counts()
		if completes < 8 || gaveUp.attrs["attempts"] != fmt.Sprint(completes) || gaveUp.attrs["reason"] != "lease ended" || gaveUp.level != slog.LevelError {
			t.Errorf("Complete called %d times; give-up logged %v %v", completes, gaveUp.level, gaveUp.attrs)
		}
		// The retrying goroutine is gone: Shutdown has nothing to wait for.
		before := time.Now()
		if err := svc.Shutdown(t.Context()); err != nil || time.Since(before) != 0 {
			t.Fatalf("Shutdown after the give-up: %v after %v", err, time.Since(before))
		}
		if c, _ := store.counts(); c != completes {
			t.Errorf("Complete called %d times after the give-up", c-completes)
		}
		e, err := store.Get(t.Context(), anonKey(key))
		if err != nil || e.Completed {
			t.Errorf("record after the give-up: %+v %v; want the open claim", e, err)
		}
		wantLines(t, logs.summary(t, key), "WARN "+msgUpdateFailed, "ERROR "+msgAbandoned)
		if n := up.hits.Load(); n != 1 {
			t.Errorf("upstream hits = %d, want 1", n)
		}
	})
}

// TestKeyedStoreUpdateRefusedStopsRetrying: a retry that the store refuses
// (ErrFenced) is the last one. If the refused Complete is this claim's own,
// applied by an attempt whose reply was lost, the answer is recorded;
// if another claim holds the key, the retries stop and the newer record is
// left alone.
func TestKeyedStoreUpdateRefusedStopsRetrying(t *testing.T) {
	t.Parallel()
	up := closingUpstream(t, "charged")
	tests := []struct {
		name string
		// lose runs on the memory store when the first Complete fails.
		lose func(t *testing.T, m *idempotency.Memory, key idempotency.Key, token uint64, resp idempotency.Response) (newer uint64)
		want string // the last line logged
	}{
		{"reply lost", func(t *testing.T, m *idempotency.Memory, key idempotency.Key, token uint64, resp idempotency.Response) uint64 {
			if err := m.Complete(context.Background(), key, token, resp); err != nil {
				t.Errorf("applying the Complete whose reply is lost: %v", err)
			}
			return 0
		}, "INFO " + msgRetried},
		{"claim taken over", func(t *testing.T, m *idempotency.Memory, key idempotency.Key, token uint64, _ idempotency.Response) uint64 {
			if err := m.Release(context.Background(), key, token); err != nil {
				t.Errorf("dropping the claim: %v", err)
			}
			cl, err := m.Claim(context.Background(), key, "another request", time.Minute)
			if err != nil || cl.Token == 0 {
				t.Errorf("taking the key over: %v %v", cl, err)
			}
			return cl.Token
		}, "ERROR " + msgAbandoned},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				store := newFlakyStore(t, 1, 0)
				var newer uint64
				store.beforeFail = func(_ context.Context, key idempotency.Key, token uint64, resp idempotency.Response) {
					newer = tt.lose(t, store.Memory, key, token, resp)
				}
				svc, logs := settleService(t, store)
				key := uniqueKey(t)
				start := time.Now()
				if _, err := svc.Fetch(t.Context(), keyedPost(up.URL, key, "amount=10")); err != nil {
					t.Fatal(err)
				}
				last := logs.wait(t, strings.SplitN(tt.want, " ", 2)[1])
				if took := last.at.Sub(start); took > settleBackoff {
					t.Errorf("stopped %v after the call, want after the one retry (at most %v)", took, settleBackoff)
				}
				if c, _ := store.counts(); c != 2 || last.attrs["attempts"] != "2" {
					t.Errorf("Complete called %d times, logged %v; want 2", c, last.attrs)
				}
				if err := svc.Shutdown(t.Context()); err != nil {
					t.Fatal(err)
				}
				e, err := store.Get(t.Context(), anonKey(key))
				switch {
				case err != nil:
					t.Fatal(err)
				case newer == 0 && (!e.Completed || string(e.Response.Body) != "charged"):
					t.Errorf("record = %+v, want the answer", e)
				case newer != 0 && (e.Completed || e.Token != newer || e.Fingerprint != "another request"):
					t.Errorf("record = %+v, want the newer claim %d untouched", e, newer)
				}
				wantLines(t, logs.summary(t, key), "WARN "+msgUpdateFailed, tt.want)
				if newer != 0 && last.attrs["reason"] != "refused" {
					t.Errorf("give-up reason = %q", last.attrs["reason"])
				}
			})
		})
	}
}

// TestShutdownAndStoreUpdateRetries: Shutdown waits for a store update being
// retried, which records the answer when the store comes back during the
// drain; at the drain deadline Shutdown stops the retries and returns once
// they have stopped.
func TestShutdownAndStoreUpdateRetries(t *testing.T) {
	t.Parallel()
	up := closingUpstream(t, "charged")
	t.Run("store back during the drain", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			store := newFlakyStore(t, 3, 0)
			svc, logs := settleService(t, store)
			key := uniqueKey(t)
			if _, err := svc.Fetch(t.Context(), keyedPost(up.URL, key, "x")); err != nil {
				t.Fatal(err)
			}
			if err := svc.Shutdown(t.Context()); err != nil {
				t.Fatalf("Shutdown = %v", err)
			}
			if e, err := store.Get(t.Context(), anonKey(key)); err != nil || !e.Completed {
				t.Fatalf("record when Shutdown returned: %+v %v; want the answer", e, err)
			}
			wantLines(t, logs.summary(t, key), "WARN "+msgUpdateFailed, "INFO "+msgRetried)
		})
	})
	t.Run("store down at the drain deadline", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			store := newFlakyStore(t, -1, 0)
			svc, logs := settleService(t, store)
			key := uniqueKey(t)
			if _, err := svc.Fetch(t.Context(), keyedPost(up.URL, key, "x")); err != nil {
				t.Fatal(err)
			}
			store.waitCompletes(t, 3)
			const drain = 2 * time.Second
			ctx, cancel := context.WithTimeout(t.Context(), drain)
			defer cancel()
			start := time.Now()
			err := svc.Shutdown(ctx)
			if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != drain {
				t.Fatalf("Shutdown = %v after %v; want the deadline's error after %v", err, time.Since(start), drain)
			}
			// Shutdown returned, so the retrying goroutine has ended: its
			// give-up is logged and no Complete comes after it.
			gaveUp, ok := logs.find(msgAbandoned)
			completes, _ := store.counts()
			if !ok || gaveUp.attrs["reason"] != "shutdown" || gaveUp.attrs["attempts"] != fmt.Sprint(completes) {
				t.Fatalf("give-up logged %v (%v); Complete called %d times", gaveUp.attrs, ok, completes)
			}
			if e, err := store.Get(t.Context(), anonKey(key)); err != nil || e.Completed {
				t.Fatalf("record after Shutdown: %+v %v; want the open claim", e, err)
			}
			wantLines(t, logs.summary(t, key), "WARN "+msgUpdateFailed, "ERROR "+msgAbandoned)
		})
	})
}

// TestKeyedReleaseRetriedWhenStoreRecovers: a send refused before anything
// left (the egress guard) releases its key; when the store fails that
// Release it is retried in the background, and the key is free again once
// the store is back. A retry refused because an earlier attempt was applied
// (its reply lost) finds nothing left to do.
func TestKeyedReleaseRetriedWhenStoreRecovers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		fails        int
		applyRelease bool
		attempts     int
	}{
		{"store back", 2, false, 3},
		{"reply lost", 1, true, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				store := newFlakyStore(t, 0, tt.fails)
				store.applyRelease = tt.applyRelease
				logs := newLogRecorder()
				svc := New(newGuardedClient(t), store, WithLogger(slog.New(logs)))
				defer svc.Shutdown(context.Background())
				key := uniqueKey(t)

				_, err := svc.Fetch(t.Context(), keyedPost("http://127.0.0.1:1/", key, "x"))
				wantCode(t, err, codes.PermissionDenied, "")
				if _, r := store.counts(); r != 1 {
					t.Fatalf("answered after %d Release calls, want 1", r)
				}
				ok := logs.wait(t, msgRetried)
				if _, r := store.counts(); r != tt.attempts || ok.attrs["update"] != "release" || ok.attrs["attempts"] != fmt.Sprint(tt.attempts) {
					t.Errorf("Release called %d times, logged %v; want %d attempts", r, ok.attrs, tt.attempts)
				}
				if _, err := store.Get(t.Context(), anonKey(key)); !errors.Is(err, idempotency.ErrNotFound) {
					t.Errorf("key after the release: Get err = %v, want ErrNotFound", err)
				}
				wantLines(t, logs.summary(t, key), "WARN "+msgUpdateFailed, "INFO "+msgRetried)
			})
		})
	}
}
