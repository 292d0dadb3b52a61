package main

import (
	"io"
	"sync"
	"time"
)

// Call log batching: the one line per Fetch is written to stderr in batches
// rather than with a write(2) each, which was a twentieth of the daemon's
// CPU per call under load (a profile of the real process at 64 calls in
// flight). A batch goes out when it would pass callLogBatch bytes, and at
// most callLogFlush after its first line, the way an access log is flushed
// on an interval; a SIGKILL loses at most that much of the call log. Every
// other line (start, reload, warnings, errors, panics) is written at once,
// after the batched lines before it, so the order of the output is the
// order of the lines.
const (
	callLogBatch = 32 << 10
	callLogFlush = 100 * time.Millisecond
)

// logSink serialises the daemon's log output on one writer: Batched lines
// wait for a batch, Direct lines flush the batch and go out with it.
type logSink struct {
	mu       sync.Mutex
	w        io.Writer
	buf      []byte
	max      int
	interval time.Duration
	timer    *time.Timer // runs flushTimer; armed while buf holds lines
	armed    bool
}

func newLogSink(w io.Writer, max int, interval time.Duration) *logSink {
	s := &logSink{w: w, max: max, interval: interval, buf: make([]byte, 0, max)}
	s.timer = time.AfterFunc(time.Hour, s.flushTimer)
	s.timer.Stop()
	return s
}

// Batched returns a writer whose lines wait for the next batch.
func (s *logSink) Batched() io.Writer { return batchedWriter{s} }

// Direct returns a writer whose lines are written at once, after any
// batched lines before them.
func (s *logSink) Direct() io.Writer { return directWriter{s} }

type batchedWriter struct{ s *logSink }

func (b batchedWriter) Write(p []byte) (int, error) {
	s := b.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.buf)+len(p) > s.max {
		if err := s.flushLocked(); err != nil {
			return 0, err
		}
	}
	if len(p) > s.max {
		return s.w.Write(p)
	}
	s.buf = append(s.buf, p...)
	if !s.armed {
		s.armed = true
		s.timer.Reset(s.interval)
	}
	return len(p), nil
}

type directWriter struct{ s *logSink }

func (d directWriter) Write(p []byte) (int, error) {
	s := d.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.buf) > 0 && len(s.buf)+len(p) <= s.max {
		// One write for the batch and this line.
		s.buf = append(s.buf, p...)
		if err := s.flushLocked(); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if err := s.flushLocked(); err != nil {
		return 0, err
	}
	return s.w.Write(p)
}

// Flush writes the batch now.
func (s *logSink) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushLocked()
}

func (s *logSink) flushTimer() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.armed = false
	s.flushLocked()
}

// flushLocked writes the batch. A failed write drops it: the lines cannot
// be written anywhere else, and keeping them would only grow the batch.
func (s *logSink) flushLocked() error {
	if s.armed {
		s.armed = false
		s.timer.Stop()
	}
	if len(s.buf) == 0 {
		return nil
	}
	_, err := s.w.Write(s.buf)
	s.buf = s.buf[:0]
	return err
}
