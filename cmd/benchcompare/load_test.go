package main

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	ms := func(n ...int) []time.Duration {
		out := make([]time.Duration, len(n))
		for i, v := range n {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"median of odd", ms(1, 2, 3), 0.5, 2 * time.Millisecond},
		{"median of even is the lower", ms(1, 2, 3, 4), 0.5, 2 * time.Millisecond},
		{"p50 of 1..100", hundred, 0.50, 50 * time.Millisecond},
		{"p99 of 1..100", hundred, 0.99, 99 * time.Millisecond},
		{"p100", hundred, 1, 100 * time.Millisecond},
		{"tiny q takes the first", hundred, 0.001, time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.sorted, tc.q); got != tc.want {
				t.Fatalf("percentile(q=%v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	if err := check(answer{status: 200, bodyLen: bodySize}, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		a   answer
		err error
	}{
		{answer{status: 503, bodyLen: bodySize}, nil},
		{answer{status: 200, bodyLen: 10}, nil},
		{answer{}, errors.New("refused")},
	} {
		if err := check(tc.a, tc.err); err == nil {
			t.Errorf("check(%+v, %v): no error", tc.a, tc.err)
		}
	}
}

// Every call the workers make is counted once, as a latency or an error,
// and the run lasts at least its duration.
func TestClosedLoop(t *testing.T) {
	t.Parallel()
	var made, failed atomic.Int64
	newCall := func() call {
		return func() (answer, error) {
			if made.Add(1)%10 == 0 {
				failed.Add(1)
				return answer{status: 500}, nil
			}
			return answer{status: 200, bodyLen: bodySize}, nil
		}
	}
	const d = 50 * time.Millisecond
	r := closedLoop(context.Background(), 4, d, newCall)
	if int64(len(r.latencies)+r.errors) != made.Load() || int64(r.errors) != failed.Load() {
		t.Fatalf("%d latencies + %d errors, want %d calls with %d failed", len(r.latencies), r.errors, made.Load(), failed.Load())
	}
	if len(r.latencies) == 0 || r.firstErr == nil {
		t.Fatalf("%d latencies, first error %v", len(r.latencies), r.firstErr)
	}
	if !slices.IsSorted(r.latencies) {
		t.Error("latencies not sorted")
	}
	if r.elapsed < d {
		t.Errorf("elapsed %v < %v", r.elapsed, d)
	}
	l := newLevel(4, r, time.Duration(made.Load())*time.Microsecond)
	if l.Requests != len(r.latencies) || l.RPS <= 0 || l.CPUPerReq != time.Microsecond || l.FirstErr == "" {
		t.Errorf("newLevel = %+v", l)
	}
}

// A cancelled context ends the loop before its duration.
func TestClosedLoopCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int64
	newCall := func() call {
		return func() (answer, error) {
			if n.Add(1) == 100 {
				cancel()
			}
			return answer{status: 200, bodyLen: bodySize}, nil
		}
	}
	start := time.Now()
	closedLoop(ctx, 2, time.Minute, newCall)
	if time.Since(start) > 30*time.Second {
		t.Fatal("the loop ran on after its context was cancelled")
	}
}
