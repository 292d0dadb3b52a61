package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// answer is what one call through a gateway returned.
type answer struct {
	status  int    // the upstream's HTTP status as the gateway reported it
	bodyLen int    // bytes of body received
	stopped string // fetchd's retry_stopped, from the response or the FetchFailure detail
	fast    bool   // a gRPC error whose attempts were all refused by fetchd before sending
}

// call makes one request; a worker owns it and calls it sequentially.
type call func() (answer, error)

// check says whether an answer to /1k is the expected one.
func check(a answer, err error) error {
	switch {
	case err != nil:
		return err
	case a.status != 200:
		return fmt.Errorf("status %d", a.status)
	case a.bodyLen != bodySize:
		return fmt.Errorf("body of %d bytes, want %d", a.bodyLen, bodySize)
	}
	return nil
}

// loadResult is one closed-loop run: every successful call's latency,
// the calls that failed and how long the run took until the last call in
// flight ended.
type loadResult struct {
	latencies []time.Duration // sorted
	errors    int
	firstErr  error
	elapsed   time.Duration
}

// closedLoop runs concurrency workers, each making calls back to back with
// its own call from newCall, until d has passed (calls in flight then are
// finished and counted) or ctx is done. Every answer goes through check.
func closedLoop(ctx context.Context, concurrency int, d time.Duration, newCall func() call) loadResult {
	type worker struct {
		lats     []time.Duration
		errors   int
		firstErr error
	}
	workers := make([]worker, concurrency)
	calls := make([]call, concurrency)
	for i := range calls {
		calls[i] = newCall()
		workers[i].lats = make([]time.Duration, 0, 4096)
	}
	var wg sync.WaitGroup
	done := ctx.Done()
	start := time.Now()
	end := start.Add(d)
	for i := range workers {
		w, c := &workers[i], calls[i]
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				err := check(c())
				if err != nil {
					w.errors++
					if w.firstErr == nil {
						w.firstErr = err
					}
					continue
				}
				w.lats = append(w.lats, time.Since(t0))
			}
		})
	}
	wg.Wait()
	r := loadResult{elapsed: time.Since(start)}
	n := 0
	for _, w := range workers {
		n += len(w.lats)
	}
	r.latencies = make([]time.Duration, 0, n)
	for _, w := range workers {
		r.latencies = append(r.latencies, w.lats...)
		r.errors += w.errors
		if r.firstErr == nil {
			r.firstErr = w.firstErr
		}
	}
	slices.Sort(r.latencies)
	return r
}

// percentile is the nearest-rank q-quantile (0 < q <= 1) of sorted, or 0
// for an empty slice.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// level is one gateway at one concurrency: throughput, latency and the
// gateway process's CPU time per completed request (0 without a process).
type level struct {
	Concurrency int
	Requests    int // completed with the expected answer
	Errors      int
	FirstErr    string
	Elapsed     time.Duration
	RPS         float64
	P50, P99    time.Duration
	CPUPerReq   time.Duration
}

func newLevel(concurrency int, r loadResult, cpu time.Duration) level {
	l := level{
		Concurrency: concurrency,
		Requests:    len(r.latencies),
		Errors:      r.errors,
		Elapsed:     r.elapsed,
		P50:         percentile(r.latencies, 0.50),
		P99:         percentile(r.latencies, 0.99),
	}
	if r.firstErr != nil {
		l.FirstErr = r.firstErr.Error()
	}
	if r.elapsed > 0 {
		l.RPS = float64(l.Requests) / r.elapsed.Seconds()
	}
	if done := l.Requests + l.Errors; done > 0 && cpu > 0 {
		l.CPUPerReq = cpu / time.Duration(done)
	}
	return l
}
