package main

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// writes records every Write it gets.
type writes struct {
	mu  sync.Mutex
	all []string
}

func (w *writes) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all = append(w.all, string(p))
	return len(p), nil
}

func (w *writes) get() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.all...)
}

// TestLogSinkBatches: batched lines go out in one write once the interval
// has passed since the first of them, not before.
func TestLogSinkBatches(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var w writes
		s := newLogSink(&w, 1024, 100*time.Millisecond)
		b := s.Batched()
		b.Write([]byte("a\n"))
		time.Sleep(60 * time.Millisecond)
		b.Write([]byte("b\n"))
		synctest.Wait()
		if got := w.get(); len(got) != 0 {
			t.Fatalf("written before the interval: %q", got)
		}
		time.Sleep(40 * time.Millisecond) // 100ms after the first line
		synctest.Wait()
		if got := w.get(); len(got) != 1 || got[0] != "a\nb\n" {
			t.Fatalf("after the interval: %q, want one write of both lines", got)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if got := w.get(); len(got) != 1 {
			t.Fatalf("an empty batch was written: %q", got)
		}
	})
}

// TestLogSinkDirectKeepsOrder: a direct line goes out at once, after the
// batched lines before it, in the same write when they fit.
func TestLogSinkDirectKeepsOrder(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var w writes
		s := newLogSink(&w, 1024, 100*time.Millisecond)
		s.Batched().Write([]byte("call 1\n"))
		s.Batched().Write([]byte("call 2\n"))
		s.Direct().Write([]byte("warning\n"))
		if got := w.get(); len(got) != 1 || got[0] != "call 1\ncall 2\nwarning\n" {
			t.Fatalf("writes = %q", got)
		}
		s.Direct().Write([]byte("error\n"))
		if got := w.get(); len(got) != 2 || got[1] != "error\n" {
			t.Fatalf("a direct line with nothing batched: %q", got)
		}
		time.Sleep(time.Second) // the interval timer was stopped
		synctest.Wait()
		if got := w.get(); len(got) != 2 {
			t.Fatalf("writes after the interval: %q", got)
		}
	})
}

// TestLogSinkFull: a batch that would pass the size goes out first; a line
// longer than the size goes out on its own; Flush empties the batch.
func TestLogSinkFull(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var w writes
		s := newLogSink(&w, 10, time.Hour)
		b := s.Batched()
		b.Write([]byte("12345\n"))
		b.Write([]byte("abcd\n")) // 11 bytes with the first: flush the first
		if got := w.get(); len(got) != 1 || got[0] != "12345\n" {
			t.Fatalf("writes = %q", got)
		}
		b.Write([]byte(strings.Repeat("x", 20) + "\n"))
		if got := w.get(); len(got) != 3 || got[1] != "abcd\n" || len(got[2]) != 21 {
			t.Fatalf("a long line: %q", got)
		}
		b.Write([]byte("tail\n"))
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		if got := w.get(); len(got) != 4 || got[3] != "tail\n" {
			t.Fatalf("after Flush: %q", got)
		}
	})
}

// TestLogSinkConcurrent: lines from many goroutines, batched and direct,
// all arrive once and whole.
func TestLogSinkConcurrent(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	var w writes
	s := newLogSink(&w, 512, time.Millisecond)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				line := []byte(fmt.Sprintf("g%d line %d\n", g, i))
				if i%10 == 0 {
					s.Direct().Write(line)
				} else {
					s.Batched().Write(line)
				}
			}
		})
	}
	wg.Wait()
	s.Flush()
	for _, p := range w.get() {
		out.WriteString(p)
	}
	seen := map[string]int{}
	for _, l := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		seen[l]++
	}
	if len(seen) != 8*200 {
		t.Fatalf("%d distinct lines, want %d", len(seen), 8*200)
	}
	for l, n := range seen {
		if n != 1 {
			t.Fatalf("line %q written %d times", l, n)
		}
	}
}
