package main

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// upstream is the HTTP/1.1 server every gateway calls, on 127.0.0.1:0 with
// keep-alive on:
//
//	/1k   200 with a 1 KiB body
//	/slow blocks until release (or the client goes away), then 200; counts arrivals
//	/503  always 503; counts requests
//
// It is safe for concurrent use.
type upstream struct {
	URL  string
	srv  *http.Server
	body []byte

	failed atomic.Int64 // requests to /503

	mu   sync.Mutex
	slow *slowGate // the current /slow gate
}

// bodySize is the length of /1k's body.
const bodySize = 1024

func startUpstream() (*upstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &upstream{URL: "http://" + ln.Addr().String(), body: make([]byte, bodySize), slow: newSlowGate(0)}
	for i := range u.body {
		u.body[i] = 'a' + byte(i%26)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /1k", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"application/octet-stream"}
		h["Content-Length"] = []string{"1024"}
		w.Write(u.body)
	})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		g := u.slow
		u.mu.Unlock()
		g.arrive()
		select {
		case <-g.release:
			w.WriteHeader(http.StatusOK)
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("GET /503", func(w http.ResponseWriter, r *http.Request) {
		u.failed.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	// No timeouts that would cut a /slow request held for the memory test.
	u.srv = &http.Server{Handler: mux, ReadHeaderTimeout: time.Minute}
	go u.srv.Serve(ln)
	return u, nil
}

// holdSlow makes the following /slow requests block on a new gate that
// reports when want of them have arrived.
func (u *upstream) holdSlow(want int) *slowGate {
	g := newSlowGate(want)
	u.mu.Lock()
	old := u.slow
	u.slow = g
	u.mu.Unlock()
	old.open()
	return g
}

func (u *upstream) Close() error {
	u.mu.Lock()
	u.slow.open()
	u.mu.Unlock()
	return u.srv.Close()
}

// slowGate holds /slow requests until open is called.
type slowGate struct {
	want    int64
	arrived atomic.Int64
	reached chan struct{} // closed when want requests have arrived
	release chan struct{} // closed by open
	once    sync.Once
}

func newSlowGate(want int) *slowGate {
	return &slowGate{want: int64(want), reached: make(chan struct{}), release: make(chan struct{})}
}

func (g *slowGate) arrive() {
	if g.arrived.Add(1) == g.want {
		close(g.reached)
	}
}

// wait returns when want requests have arrived or timeout has passed, with
// the number that arrived.
func (g *slowGate) wait(timeout time.Duration) int {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-g.reached:
	case <-t.C:
	}
	return int(g.arrived.Load())
}

// open releases every request held and every later one.
func (g *slowGate) open() { g.once.Do(func() { close(g.release) }) }
