package outbound

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

func TestBodiless(t *testing.T) {
	t.Parallel()
	tests := []struct {
		method string
		status int
		want   bool
	}{
		{"HEAD", 200, true},
		{"HEAD", 404, true},
		{"GET", 100, true},
		{"GET", 101, true},
		{"GET", 200, false},
		{"POST", 201, false},
		{"GET", 204, true},
		{"GET", 205, false},
		{"GET", 304, true},
		{"GET", 503, false},
		{"head", 200, false}, // methods are case-sensitive
	}
	for _, tt := range tests {
		if got := bodiless(tt.method, tt.status); got != tt.want {
			t.Errorf("bodiless(%s, %d) = %v, want %v", tt.method, tt.status, got, tt.want)
		}
	}
}

// TestAlarm runs an attempt's alarm on synctest's clock: each case sets it
// up at the start, then says when the attempt's context must end and with
// which cause; nil means it must not end (before the case stops it).
func TestAlarm(t *testing.T) {
	t.Parallel()
	const (
		read = 100 * time.Millisecond
		end  = time.Second
	)
	tests := []struct {
		name  string
		read  time.Duration
		until time.Duration // the attempt's end; 0: none
		total bool          // the end is the run's total deadline
		// run drives the alarm after until, in the bubble; it returns when
		// the case is done.
		run   func(a *alarm)
		at    time.Duration // when the context ends
		cause error
	}{
		{"attempt end", 0, end, false, nil, end, errAttemptTimeout},
		{"total deadline", 0, end, true, nil, end, errTotalTimeout},
		{"end already passed", 0, -time.Millisecond, false, nil, 0, errAttemptTimeout},
		{"silence after a kick", read, end, false, func(a *alarm) { a.kick() }, read, errReadTimeout},
		{"no watchdog before the first kick", read, end, false, nil, end, errAttemptTimeout},
		{"no watchdog without a read timeout", 0, end, false, func(a *alarm) { a.kick() }, end, errAttemptTimeout},
		{
			"kicks hold off the silence until the end", read, end, false,
			func(a *alarm) {
				for range 20 {
					a.kick()
					time.Sleep(read / 2)
				}
			},
			end, errAttemptTimeout,
		},
		{
			"silence after the last of several kicks", read, 0, false,
			func(a *alarm) {
				for i := range 5 {
					if i > 0 {
						time.Sleep(60 * time.Millisecond)
					}
					a.kick() // the last at 240ms
				}
			},
			240*time.Millisecond + read, errReadTimeout,
		},
		{
			"pause holds the watchdog, not the end", read, end, false,
			func(a *alarm) {
				a.kick()
				time.Sleep(read / 2)
				a.pause()
			},
			end, errAttemptTimeout,
		},
		{
			"a kick after a pause restarts the watchdog", read, end, false,
			func(a *alarm) {
				a.kick()
				a.pause()
				time.Sleep(3 * read)
				a.kick() // at 300ms
			},
			3*read + read, errReadTimeout,
		},
		{
			"stop", read, end, false,
			func(a *alarm) {
				a.kick()
				a.stop()
				a.kick()
			},
			0, nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancelCause(context.Background())
				defer cancel(nil)
				start := time.Now()
				var ended time.Duration
				stopped := context.AfterFunc(ctx, func() { ended = time.Since(start) })
				defer stopped()
				a := &alarm{cancel: cancel, read: tt.read}
				if tt.until != 0 {
					a.until(start, start.Add(tt.until), tt.total)
				}
				if tt.run != nil {
					tt.run(a)
				}
				time.Sleep(2 * end) // well past every bound
				synctest.Wait()
				a.stop()
				if got := context.Cause(ctx); got != tt.cause {
					t.Fatalf("cause %v, want %v", got, tt.cause)
				}
				if tt.cause != nil && ended != tt.at {
					t.Errorf("ended after %v, want %v", ended, tt.at)
				}
			})
		})
	}
}
