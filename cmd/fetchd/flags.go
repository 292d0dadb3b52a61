package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/fetchd/fetchd/internal/policy"
)

// cidrList is a repeatable --allow-cidr flag.
type cidrList []netip.Prefix

func (l *cidrList) String() string {
	s := make([]string, len(*l))
	for i, p := range *l {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func (l *cidrList) Set(v string) error {
	p, err := netip.ParsePrefix(strings.TrimSpace(v))
	if err != nil {
		return fmt.Errorf("%q is not a CIDR such as 127.0.0.0/8 or ::1/128", v)
	}
	if p != p.Masked() {
		return fmt.Errorf("%q has host bits set; did you mean %s?", v, p.Masked())
	}
	*l = append(*l, p)
	return nil
}

// ParseFlags sets m's fields from the command line. It is the only place
// that reads flags; nothing in internal/ reads flags or the environment.
func (m *Main) ParseFlags(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("fetchd", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&m.Listen, "listen", m.Listen, "gRPC listen address (port 0 picks a free one; the log says which)")
	fs.StringVar(&m.Admin, "admin", m.Admin, "admin HTTP listen address (/healthz, /metrics); empty disables")
	fs.StringVar(&m.Config, "config", m.Config, "policy file (YAML); reloaded on SIGHUP and when it changes; a bad file is refused and the running policy kept")
	fs.StringVar(&m.Store, "store", m.Store, "idempotency store: file:PATH (embedded, durable), redis://HOST:PORT/DB (fleet) or memory:")
	fs.Var((*cidrList)(&m.AllowCIDRs), "allow-cidr", "address range the egress guard lets through (repeatable), e.g. 127.0.0.0/8 for local tests")
	fs.DurationVar(&m.DrainTimeout, "drain-timeout", m.DrainTimeout, "on SIGTERM/SIGINT, how long in-flight calls get to finish")
	fs.DurationVar(&m.ReloadInterval, "reload-interval", m.ReloadInterval, "how often the --config file is checked for changes; 0 turns the check off (SIGHUP still reloads)")
	fs.StringVar(&m.TLSCert, "tls-cert", m.TLSCert, "PEM certificate for the gRPC listener (with --tls-key); empty serves plaintext")
	fs.StringVar(&m.TLSKey, "tls-key", m.TLSKey, "PEM private key of --tls-cert")
	fs.IntVar(&m.GCMinHeapMiB, "gc-min-heap-mib", m.GCMinHeapMiB, "floor of the garbage collector's heap goal in MiB: fewer collections while the live heap is small; 0 turns it off (so do GOGC and GOMEMLIMIT in the environment)")
	fs.StringVar(&m.TLSClientCA, "tls-client-ca", m.TLSClientCA, "PEM CA bundle that caller client certificates are verified against (mTLS identity)")
	fs.BoolVar(&m.DirectHTTP, "direct-http", m.DirectHTTP, "send to plain-HTTP (http://) upstreams with fetchd's direct HTTP/1.1 transport (request and answer on the call's own goroutine); false uses Go's net/http Transport; HTTPS always uses net/http's")
	fs.IntVar(&m.StreamWorkers, "stream-workers", m.StreamWorkers, "goroutines kept to run calls on (a call arriving while all are busy gets a new one); 0 starts a goroutine for every call")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (fetchd takes only flags, or the token command)", fs.Arg(0))
	}
	if m.Config != "" {
		set, err := policy.LoadFile(m.Config)
		if err != nil {
			return fmt.Errorf("--config: %w", err)
		}
		m.preloaded = set
		given := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
		m.applyServer(set.Server(), given)
	}
	if m.DrainTimeout <= 0 {
		return errors.New("--drain-timeout must be positive")
	}
	if m.GCMinHeapMiB < 0 || m.GCMinHeapMiB > 1<<20 {
		return fmt.Errorf("--gc-min-heap-mib must be between 0 and %d, got %d", 1<<20, m.GCMinHeapMiB)
	}
	if m.StreamWorkers < 0 || m.StreamWorkers > maxStreamWorkers {
		return fmt.Errorf("--stream-workers must be between 0 and %d, got %d", maxStreamWorkers, m.StreamWorkers)
	}
	return nil
}
