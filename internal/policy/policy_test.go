package policy

import (
	"slices"
	"testing"
	"time"
)

func TestResolveDefaults(t *testing.T) {
	t.Parallel()
	got := Default().Resolve(Ask{})
	if got.MaxAttempts != 3 || got.ConnectTimeout != 3*time.Second || got.ReadTimeout != 30*time.Second ||
		got.AttemptTimeout != 10*time.Second || got.TotalTimeout != 30*time.Second ||
		got.InitialBackoff != 100*time.Millisecond || got.MaxBackoff != 10*time.Second ||
		got.Multiplier != 2 || got.MaxRetryAfter != 60*time.Second || got.IgnoreRetryAfter {
		t.Fatalf("defaults = %+v", got)
	}
	if !slices.Equal(got.RetryOn, []int{429, 500, 502, 503, 504}) {
		t.Fatalf("RetryOn = %v", got.RetryOn)
	}
	if got.MaxResponseBytes >= 4<<20 {
		t.Fatalf("MaxResponseBytes %d must stay below the 4 MiB gRPC receive default", got.MaxResponseBytes)
	}
}

func TestResolveClampsAsks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		ask   Ask
		check func(t *testing.T, p Policy, ask Ask)
	}{
		{"attempts above the org cap are clamped", Ask{MaxAttempts: 50}, func(t *testing.T, p Policy, ask Ask) {
			if got := p.Resolve(ask).MaxAttempts; got != 5 {
				t.Errorf("MaxAttempts = %d, want 5", got)
			}
		}},
		{"one attempt means no retry", Ask{MaxAttempts: 1}, func(t *testing.T, p Policy, ask Ask) {
			if got := p.Resolve(ask).MaxAttempts; got != 1 {
				t.Errorf("MaxAttempts = %d, want 1", got)
			}
		}},
		{"timeouts above caps are clamped", Ask{ConnectTimeout: time.Hour, ReadTimeout: time.Hour, AttemptTimeout: time.Hour, TotalTimeout: time.Hour}, func(t *testing.T, p Policy, ask Ask) {
			got := p.Resolve(ask)
			if got.ConnectTimeout != p.MaxConnectTimeout || got.ReadTimeout != p.MaxReadTimeout ||
				got.AttemptTimeout != p.MaxAttemptTimeout || got.TotalTimeout != p.MaxTotalTimeout {
				t.Errorf("timeouts = %+v", got)
			}
		}},
		{"shorter timeouts are kept", Ask{TotalTimeout: 2 * time.Second, ReadTimeout: time.Second}, func(t *testing.T, p Policy, ask Ask) {
			got := p.Resolve(ask)
			if got.TotalTimeout != 2*time.Second || got.ReadTimeout != time.Second || got.ConnectTimeout != p.ConnectTimeout {
				t.Errorf("timeouts = %+v", got)
			}
			if !got.ShortenedTimeouts {
				t.Error("a read timeout below the policy's is not reported as ShortenedTimeouts")
			}
		}},
		{"a shorter total timeout alone shortens nothing the breaker counts", Ask{TotalTimeout: time.Second}, func(t *testing.T, p Policy, ask Ask) {
			if p.Resolve(ask).ShortenedTimeouts {
				t.Error("ShortenedTimeouts set for a total timeout")
			}
		}},
		{"timeouts at or above the policy's are not shortened", Ask{ConnectTimeout: 3 * time.Second, ReadTimeout: time.Hour, AttemptTimeout: 11 * time.Second}, func(t *testing.T, p Policy, ask Ask) {
			if p.Resolve(ask).ShortenedTimeouts {
				t.Error("ShortenedTimeouts set")
			}
		}},
		{"backoff asks are clamped and max never below initial", Ask{InitialBackoff: 5 * time.Second, MaxBackoff: time.Second, Multiplier: 100}, func(t *testing.T, p Policy, ask Ask) {
			got := p.Resolve(ask)
			if got.InitialBackoff != 5*time.Second || got.MaxBackoff != 5*time.Second || got.Multiplier != p.MaxMultiplier {
				t.Errorf("backoff = %v..%v x%v", got.InitialBackoff, got.MaxBackoff, got.Multiplier)
			}
		}},
		{"asked statuses replace the default list", Ask{RetryOn: []int{409}, IgnoreRetryAfter: true}, func(t *testing.T, p Policy, ask Ask) {
			got := p.Resolve(ask)
			if !slices.Equal(got.RetryOn, []int{409}) || !got.IgnoreRetryAfter {
				t.Errorf("RetryOn = %v ignore=%v", got.RetryOn, got.IgnoreRetryAfter)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.check(t, Default(), tt.ask)
		})
	}
}

func TestResolveDoesNotAlias(t *testing.T) {
	t.Parallel()
	p := Default()
	got := p.Resolve(Ask{})
	got.RetryOn[0] = 999
	if p.RetryOn[0] != 429 {
		t.Fatal("Resolve must copy RetryOn, the policy's slice was changed")
	}
}
