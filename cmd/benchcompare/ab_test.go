package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestABSmoke runs the alternating comparison for real: the same fetchd
// build as before and after, and the forwarder re-executed from this
// binary, two short rounds at two levels. Each level's row must carry
// three positive rates and ratios that agree with them.
func TestABSmoke(t *testing.T) {
	t.Parallel()
	fetchd := buildFetchd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := abCommand(ctx, []string{"-before", fetchd, "-after", fetchd, "-rounds", "2",
		"-duration", "200ms", "-warmup", "0s", "-concurrency", "1,4"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("ab: %v\n%s", err, stderr.String())
	}
	if got := strings.Count(stderr.String(), "ab: round "); got != 2 {
		t.Errorf("%d rounds reported, want 2:\n%s", got, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 4 || !strings.Contains(lines[1], "after / before") {
		t.Fatalf("output:\n%s", stdout.String())
	}
	for i, want := range []string{"1", "4"} {
		f := strings.Fields(lines[2+i])
		if len(f) < 7 || f[0] != want {
			t.Fatalf("row %d: %q", i, lines[2+i])
		}
		var v [7]float64
		for j := 1; j < 7; j++ {
			if v[j], err = strconv.ParseFloat(f[j], 64); err != nil || v[j] <= 0 {
				t.Fatalf("row %d, column %d: %q", i, j, f[j])
			}
		}
		// The ratios are the rates' own (to their printed precision).
		for _, r := range []struct{ ratio, num, den float64 }{{v[4], v[1], v[3]}, {v[5], v[2], v[3]}, {v[6], v[2], v[1]}} {
			if d := r.ratio - r.num/r.den; d > 0.01 || d < -0.01 {
				t.Errorf("row %d: ratio %.2f, rates give %.3f", i, r.ratio, r.num/r.den)
			}
		}
	}
}

// TestABBadInput: missing binaries and nonsense settings are refused
// before anything starts.
func TestABBadInput(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-before", "x"}, "-before and -after"},
		{[]string{"-before", "x", "-after", "y", "-rounds", "0"}, "-rounds and -duration must be positive"},
		{[]string{"-before", "x", "-after", "y", "-duration", "0s"}, "-rounds and -duration must be positive"},
		{[]string{"-before", "x", "-after", "y", "-concurrency", "1,zero"}, "-concurrency"},
		{[]string{"-before", "x", "-after", "y", "extra"}, `unexpected argument "extra"`},
	} {
		var stdout, stderr bytes.Buffer
		err := abCommand(t.Context(), c.args, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ab %q: %v, want an error with %q", c.args, err, c.want)
		}
	}
}
