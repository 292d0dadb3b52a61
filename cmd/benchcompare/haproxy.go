package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"text/template"
)

// haproxyConfig is what the haproxy gateway runs with.
type haproxyConfig struct {
	Bind     string // frontend address, host:port
	Upstream string // the one backend server, host:port
	// MaxConn is the global and frontend maxconn; the backend server's
	// maxconn is the same.
	MaxConn int
}

// haproxyTemplate is the config a user would write for an HTTP gateway
// that retries failed connections, empty answers, timeouts and 502/503/504
// (up to 4 attempts, as fetchd's max_attempts 4): keep-alive to both sides,
// no logging.
var haproxyTemplate = template.Must(template.New("haproxy").Parse(`global
    maxconn {{.MaxConn}}

defaults
    mode http
    option http-keep-alive
    timeout connect 3s
    timeout client 30s
    timeout server 30s
    retries 3
    retry-on conn-failure empty-response response-timeout 503 502 504

frontend gateway
    bind {{.Bind}}
    maxconn {{.MaxConn}}
    default_backend upstream

backend upstream
    server upstream {{.Upstream}} maxconn {{.MaxConn}}
`))

func (c haproxyConfig) render() string {
	var b bytes.Buffer
	if err := haproxyTemplate.Execute(&b, c); err != nil {
		panic(err) // the template and its fields are fixed
	}
	return b.String()
}

// haproxyMaxConn is the largest maxconn at most want that haproxy can run
// with under the hard limit on open files: haproxy needs about two
// descriptors per connection (client and server side) and refuses to
// start when it cannot raise its limit that far. It is rounded down to a
// thousand, as a person would write it.
func haproxyMaxConn(want int, fileLimit uint64) int {
	fit := (int(min(fileLimit, 1<<30)) - 200) / 2
	if want <= fit {
		return want
	}
	if fit >= 1000 {
		return fit / 1000 * 1000
	}
	return max(fit, 1)
}

// fileLimit is the hard RLIMIT_NOFILE of this process, which its children
// may raise their own limit to.
func fileLimit() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 1024
	}
	return r.Max
}

// haproxyVersion is the first line of `haproxy -v`.
func haproxyVersion(bin string) (string, error) {
	out, err := exec.Command(bin, "-v").Output()
	if err != nil {
		return "", fmt.Errorf("%s -v: %w", bin, err)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line), nil
}
