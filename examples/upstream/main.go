// Command upstream is a small HTTP server to try fetchd against on one
// machine; the README's examples call it. It serves:
//
//	GET  /hello      200 with a short text body
//	     /status/N   an empty answer with status N (200 to 599)
//	POST /charges    503 for the first request of each Idempotency-Key,
//	                 201 with a JSON body naming the key after that; 400
//	                 without the header
//
// It listens on 127.0.0.1:8080 unless -listen says otherwise (port 0 picks a
// free one) and writes "upstream: listening on http://ADDR" to stderr once it
// accepts connections. Keys are kept in memory until it exits.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to listen on; port 0 picks a free one")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "upstream:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "upstream: listening on http://%s\n", ln.Addr())
	fmt.Fprintln(os.Stderr, "upstream:", http.Serve(ln, newMux()))
	os.Exit(1)
}

func newMux() *http.ServeMux {
	var mu sync.Mutex
	seen := map[string]bool{} // Idempotency-Key values that got their 503

	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "hello from upstream\n")
	})
	mux.HandleFunc("/status/{code}", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.PathValue("code"))
		if err != nil || code < 200 || code > 599 {
			http.Error(w, "want a status from 200 to 599", http.StatusBadRequest)
			return
		}
		w.WriteHeader(code)
	})
	mux.HandleFunc("POST /charges", func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Idempotency-Key")
		if key == "" {
			http.Error(w, "Idempotency-Key header required", http.StatusBadRequest)
			return
		}
		mu.Lock()
		first := !seen[key]
		seen[key] = true
		mu.Unlock()
		if first {
			http.Error(w, "busy, try again", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]string{"id": "ch_" + key})
	})
	return mux
}
