package idempotency

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// The ClaimWait tests run in a synctest bubble: the memory store's default clock and ClaimWait's
// timer both read the bubble's fake time, so the waits take no real time.
func TestClaimWait(t *testing.T) {
	t.Parallel()
	const interval = 100 * time.Millisecond
	key := Key{AnonymousScope, "k"}
	tests := []struct {
		name string
		// first runs on the first claim's holder, in its own goroutine, and returns nothing.
		first     func(ctx context.Context, s *Memory, token uint64)
		lease     time.Duration // of the first claim
		wait      time.Duration // ClaimWait's ctx timeout
		fp        string        // ClaimWait's fingerprint
		want      func(t *testing.T, c Claim, err error)
		wantTaken time.Duration // how long ClaimWait should take
	}{
		{
			name: "completes while waiting",
			first: func(ctx context.Context, s *Memory, token uint64) {
				time.Sleep(250 * time.Millisecond)
				_ = s.Complete(ctx, key, token, Response{Status: 201})
			},
			lease: time.Minute, wait: time.Second, fp: "fp",
			want: func(t *testing.T, c Claim, err error) {
				if err != nil || c.Entry == nil || !c.Entry.Completed || c.Entry.Response.Status != 201 {
					t.Fatalf("got %+v, %v; want the completed entry", c, err)
				}
			},
			wantTaken: 300 * time.Millisecond, // the first poll after the completion
		},
		{
			name: "released while waiting",
			first: func(ctx context.Context, s *Memory, token uint64) {
				time.Sleep(150 * time.Millisecond)
				_ = s.Release(ctx, key, token)
			},
			lease: time.Minute, wait: time.Second, fp: "fp",
			want: func(t *testing.T, c Claim, err error) {
				if err != nil || c.Token == 0 {
					t.Fatalf("got %+v, %v; want a token", c, err)
				}
			},
			wantTaken: 200 * time.Millisecond,
		},
		{
			name:  "lease ends while waiting",
			first: func(context.Context, *Memory, uint64) {},
			lease: 450 * time.Millisecond, wait: time.Second, fp: "fp",
			want: func(t *testing.T, c Claim, err error) {
				if err != nil || c.Token == 0 {
					t.Fatalf("got %+v, %v; want a token", c, err)
				}
			},
			wantTaken: 500 * time.Millisecond,
		},
		{
			name:  "gives up at the deadline",
			first: func(context.Context, *Memory, uint64) {},
			lease: time.Minute, wait: 350 * time.Millisecond, fp: "fp",
			want: func(t *testing.T, c Claim, err error) {
				if !errors.Is(err, context.DeadlineExceeded) || c.Entry == nil || c.Entry.Completed {
					t.Fatalf("got %+v, %v; want the in-flight entry and DeadlineExceeded", c, err)
				}
			},
			wantTaken: 350 * time.Millisecond,
		},
		{
			name:  "different fingerprint returns at once",
			first: func(context.Context, *Memory, uint64) {},
			lease: time.Minute, wait: time.Second, fp: "other",
			want: func(t *testing.T, c Claim, err error) {
				if err != nil || c.Entry == nil || c.Entry.Fingerprint != "fp" {
					t.Fatalf("got %+v, %v; want the other request's entry", c, err)
				}
			},
			wantTaken: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				s := NewMemory()
				t.Cleanup(func() { _ = s.Close() })
				c, err := s.Claim(t.Context(), key, "fp", tt.lease)
				if err != nil {
					t.Fatal(err)
				}
				go tt.first(t.Context(), s, c.Token)
				ctx, cancel := context.WithTimeout(t.Context(), tt.wait)
				defer cancel()
				start := time.Now()
				got, err := ClaimWait(ctx, s, key, tt.fp, time.Minute, interval)
				if taken := time.Since(start); taken != tt.wantTaken {
					t.Errorf("ClaimWait took %v, want %v", taken, tt.wantTaken)
				}
				tt.want(t, got, err)
				synctest.Wait()
			})
		})
	}
}

func TestClaimWaitReturnsStoreErrors(t *testing.T) {
	t.Parallel()
	s := NewMemory()
	_ = s.Close()
	_, err := ClaimWait(t.Context(), s, Key{AnonymousScope, "k"}, "fp", time.Minute, time.Millisecond)
	wantErr(t, "ClaimWait on a closed store", err, ErrClosed)
	if _, err := ClaimWait(t.Context(), NewMemory(WithSweepInterval(0)), Key{}, "fp", time.Minute, 0); err == nil {
		t.Fatal("ClaimWait with a zero interval succeeded")
	}
}
