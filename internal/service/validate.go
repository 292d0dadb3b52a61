package service

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	"google.golang.org/protobuf/types/known/durationpb"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
	"github.com/fetchd/fetchd/internal/egress"
	"github.com/fetchd/fetchd/internal/policy"
)

// MaxKeyLength is the longest idempotency key accepted, as in Stripe's API.
const MaxKeyLength = 255

// MaxRequestMessageBytes is the gRPC receive limit a server hosting the
// Service should set: above every policy's request body limit, so an
// oversized body reaches validation and the caller is told the limit
// (INVALID_ARGUMENT) instead of getting a transport error.
const MaxRequestMessageBytes = 8<<20 + 64<<10

// replayHeaders are the headers net/http treats as making any request
// replayable: it silently re-sends a request carrying one of them on a
// reused connection, so neither may ride along without a key that fetchd
// deduplicates.
var replayHeaders = []string{"Idempotency-Key", "X-Idempotency-Key"}

// invalidError is bad caller input; its message is shown to the caller as is.
type invalidError struct{ msg string }

func (e *invalidError) Error() string { return e.msg }

func invalidf(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// call is a validated Fetch request.
type call struct {
	method string
	u      *url.URL // normalised, as sent
	header http.Header
	body   []byte
	key    string
	ask    policy.Ask
}

// validate checks everything about req that does not depend on the policy;
// complete does the rest once the policy is resolved.
func validate(req *fetchdv1.FetchRequest) (*call, error) {
	if req.GetUrl() == "" {
		return nil, invalidf("url is required: an absolute http:// or https:// URL")
	}
	u, err := egress.ParseURL(req.GetUrl())
	if err != nil {
		return nil, err
	}
	method := req.GetMethod()
	if method == "" {
		method = http.MethodGet
	}
	if !httpguts.ValidHeaderFieldName(method) { // a method is an HTTP token, like a field name
		return nil, invalidf("method %q is not a valid HTTP method token", truncate(method, 32))
	}
	c := &call{method: method, u: u, body: req.GetBody(), key: req.GetIdempotencyKey()}
	if err := validateKey(c.key); err != nil {
		return nil, err
	}
	c.header = make(http.Header, len(req.GetHeaders())+1)
	for i, h := range req.GetHeaders() {
		name := h.GetName()
		if !httpguts.ValidHeaderFieldName(name) {
			return nil, invalidf("headers[%d]: name %q is not a valid HTTP header name", i, truncate(name, 64))
		}
		if !httpguts.ValidHeaderFieldValue(h.GetValue()) {
			// The value may be a secret: name the header, never echo the value.
			return nil, invalidf("headers[%d] (%s): value is not a valid HTTP header value (control characters such as CR or LF are not allowed)", i, name)
		}
		if canon := http.CanonicalHeaderKey(name); slices.Contains(replayHeaders, canon) {
			return nil, invalidf("headers[%d]: pass the idempotency key in the idempotency_key field, not as a %s header", i, canon)
		}
		c.header.Add(name, h.GetValue())
	}
	if c.ask, err = validateAsk(req); err != nil {
		return nil, err
	}
	return c, nil
}

// complete checks what depends on the resolved policy (the body limit, the
// target's idempotency header) and adds the idempotency header.
func (c *call) complete(res *policy.Resolved) error {
	if int64(len(c.body)) > res.MaxRequestBytes {
		return invalidf("request body is %d bytes, over the %d-byte limit", len(c.body), res.MaxRequestBytes)
	}
	name := http.CanonicalHeaderKey(res.IdempotencyHeader)
	if name == "" {
		return nil
	}
	if _, ok := c.header[name]; ok {
		return invalidf("header %s carries the idempotency key for this target: pass the key in the idempotency_key field", name)
	}
	if c.key != "" {
		c.header.Set(name, c.key)
	}
	return nil
}

func validateKey(key string) error {
	if len(key) > MaxKeyLength {
		return invalidf("idempotency_key is %d bytes, over the %d-byte limit", len(key), MaxKeyLength)
	}
	for i := 0; i < len(key); i++ {
		if b := key[i]; b < 0x20 || b > 0x7e {
			return invalidf("idempotency_key has a control or non-ASCII byte at offset %d: only printable ASCII is allowed", i)
		}
	}
	if key != "" && strings.TrimSpace(key) == "" {
		return invalidf("idempotency_key is blank")
	}
	return nil
}

func validateAsk(req *fetchdv1.FetchRequest) (policy.Ask, error) {
	var ask policy.Ask
	var err error
	t := req.GetTimeouts()
	for _, d := range []struct {
		name string
		pb   *durationpb.Duration
		dst  *time.Duration
	}{
		{"timeouts.connect", t.GetConnect(), &ask.ConnectTimeout},
		{"timeouts.read", t.GetRead(), &ask.ReadTimeout},
		{"timeouts.attempt", t.GetAttempt(), &ask.AttemptTimeout},
		{"timeouts.total", t.GetTotal(), &ask.TotalTimeout},
		{"retry.initial_backoff", req.GetRetry().GetInitialBackoff(), &ask.InitialBackoff},
		{"retry.max_backoff", req.GetRetry().GetMaxBackoff(), &ask.MaxBackoff},
	} {
		if *d.dst, err = duration(d.name, d.pb); err != nil {
			return ask, err
		}
	}
	r := req.GetRetry()
	ask.MaxAttempts = int(min(r.GetMaxAttempts(), math.MaxInt32))
	ask.IgnoreRetryAfter = r.GetIgnoreRetryAfter()
	if m := r.GetMultiplier(); m != 0 {
		if math.IsNaN(m) || math.IsInf(m, 0) || m < 1 {
			return ask, invalidf("retry.multiplier must be at least 1 (or 0 for the policy's value), got %v", m)
		}
		ask.Multiplier = m
	}
	for _, s := range r.GetRetryOnStatus() {
		if s < 400 || s > 599 {
			return ask, invalidf("retry.retry_on_status: %d is not an HTTP error status (400-599)", s)
		}
		ask.RetryOn = append(ask.RetryOn, int(s))
	}
	return ask, nil
}

// duration converts an optional proto duration; unset is zero.
func duration(name string, d *durationpb.Duration) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, invalidf("%s is not a valid duration", name)
	}
	v := d.AsDuration()
	if v < 0 {
		return 0, invalidf("%s must not be negative, got %v", name, v)
	}
	return v, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
