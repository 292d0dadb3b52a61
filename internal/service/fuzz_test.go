package service

import (
	"errors"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http/httpguts"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
	"github.com/fetchd/fetchd/internal/egress"
	"github.com/fetchd/fetchd/internal/policy"
)

// fuzzTargetHeaders are idempotency headers a target rule may name, for
// call.complete.
var fuzzTargetHeaders = []string{policy.DefaultIdempotencyHeader, "X-Request-Key", "X-Custom"}

// FuzzValidate checks that validate and call.complete never panic, that
// every refusal is bad input (*invalidError or *egress.URLError) that
// toStatus answers INVALID_ARGUMENT, that a refusal's message does not
// depend on the header value (so never echoes a secret), and that what
// passes is safe to send: an http(s) URL with a host as egress.ParseURL
// normalises it, a method token, header names and values net/http writes
// as given, a printable-ASCII key, a body within the policy's limit.
//
// One header is sent unless name and value are both empty; timeout is
// every timeout and backoff of the ask (seconds, nanos).
//
//	go test -run '^$' -fuzz '^FuzzValidate$' -fuzztime 60s ./internal/service/
func FuzzValidate(f *testing.F) {
	type seed struct {
		url, method, name, value, key string
		body, limit                   uint16
	}
	for _, s := range []seed{
		{"https://example.com/path?q=1", "", "Accept", "application/json", "", 0, 1024},
		{"http://EXAMPLE.com:8080/x#frag", "POST", "Authorization", "Bearer s3cr3t-token", "order-42", 100, 1024},
		{"https://example.com/", "PUT", "X-Request-Key", "caller-set", "k", 2048, 1024},
		{"", "", "", "", "", 0, 0},
		{"/just/a/path", "GET", "X-A", "v", "", 0, 0},
		{"ftp://example.com/x", "", "", "", "", 0, 0},
		{"http:///path", "", "", "", "", 0, 0},
		{"http://user:secret@example.com/", "", "", "", "", 0, 0},
		{"http://example.com:70000/", "", "", "", "", 0, 0},
		{"http://example.com/", "GET /x", "", "", "", 0, 0},
		{"http://example.com/", "GET\r\nX: y", "", "", "", 0, 0},
		{"http://example.com/", "", "X:Y", "v", "", 0, 0},
		{"http://example.com/", "", "", "v", "", 0, 0},
		{"http://example.com/", "", "X-A", "s3cret\r\nInjected: 1", "", 0, 0},
		{"http://example.com/", "", "X-A", "tok\x00en", "", 0, 0},
		{"http://example.com/", "", "X-A", "caf\xc3\xa9\tok", "", 0, 0},
		{"http://example.com/", "", "idempotency-key", "k", "", 0, 0},
		{"http://example.com/", "", "X-Idempotency-Key", "k", "", 0, 0},
		{"http://example.com/", "", "", "", strings.Repeat("k", MaxKeyLength+1), 0, 0},
		{"http://example.com/", "", "", "", "a\nb", 0, 0},
		{"http://example.com/", "", "", "", "ключ", 0, 0},
		{"http://example.com/", "", "", "", "   ", 0, 0},
	} {
		f.Add(s.url, s.method, s.name, s.value, s.key, s.body, s.limit, uint8(0), int64(1), int32(0), 2.0, uint32(503))
	}
	f.Add("http://example.com/", "", "", "", "", uint16(0), uint16(0), uint8(0), int64(-1), int32(0), 0.0, uint32(0))
	f.Add("http://example.com/", "", "", "", "", uint16(0), uint16(0), uint8(0), int64(1), int32(-5), 0.0, uint32(0))
	f.Add("http://example.com/", "", "", "", "", uint16(0), uint16(0), uint8(0), int64(0), int32(0), 0.5, uint32(0))
	f.Add("http://example.com/", "", "", "", "", uint16(0), uint16(0), uint8(0), int64(0), int32(0), math.NaN(), uint32(200))
	f.Fuzz(func(t *testing.T, rawURL, method, name, value, key string, bodyLen, limit uint16, target uint8,
		seconds int64, nanos int32, multiplier float64, retryOn uint32) {
		hasHeader := name != "" || value != ""
		build := func(value string) *fetchdv1.FetchRequest {
			req := &fetchdv1.FetchRequest{Url: rawURL, Method: method, IdempotencyKey: key, Body: make([]byte, bodyLen)}
			if hasHeader {
				req.Headers = []*fetchdv1.Header{{Name: name, Value: value}}
			}
			d := &durationpb.Duration{Seconds: seconds, Nanos: nanos}
			req.Timeouts = &fetchdv1.Timeouts{Connect: d, Read: d, Attempt: d, Total: d}
			req.Retry = &fetchdv1.RetryPolicy{InitialBackoff: d, MaxBackoff: d, Multiplier: multiplier, RetryOnStatus: []uint32{retryOn}}
			return req
		}
		c, err := validate(build(value))

		// The message must not depend on the value: the same request with
		// another value of the same validity gets the same answer.
		other := "v"
		if !httpguts.ValidHeaderFieldValue(value) {
			other = "\x00"
		}
		if _, err2 := validate(build(other)); (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() {
			t.Fatalf("the answer depends on the header value: %v; with another value: %v", err, err2)
		}

		if err != nil {
			checkRefusal(t, err, value)
			if c != nil {
				t.Fatal("validate returned a call with its error")
			}
			if httpguts.ValidHeaderFieldValue(value) || len(value) <= 3 {
				return
			}
			if _, uerr := egress.ParseURL(rawURL); uerr == nil && strings.Contains(err.Error(), value) {
				t.Fatalf("error echoes the header value: %q", err.Error())
			}
			return
		}
		checkCall(t, c, rawURL, method, name, value, key, int(bodyLen))

		res := &policy.Resolved{MaxRequestBytes: int64(limit), IdempotencyHeader: fuzzTargetHeaders[int(target)%len(fuzzTargetHeaders)]}
		err = c.complete(res)
		carries := hasHeader && http.CanonicalHeaderKey(name) == res.IdempotencyHeader
		switch {
		case int(bodyLen) > int(limit) || carries:
			if err == nil {
				t.Fatalf("complete took a %d-byte body (limit %d), header %q (target's %q)", bodyLen, limit, name, res.IdempotencyHeader)
			}
			checkRefusal(t, err, value)
		case err != nil:
			t.Fatalf("complete refused a %d-byte body (limit %d), header %q (target's %q): %v", bodyLen, limit, name, res.IdempotencyHeader, err)
		case key != "" && !slices.Equal(c.header.Values(res.IdempotencyHeader), []string{key}):
			t.Fatalf("key %q sent as %s: %q", key, res.IdempotencyHeader, c.header.Values(res.IdempotencyHeader))
		case key == "" && c.header.Get(res.IdempotencyHeader) != "":
			t.Fatalf("no key, yet %s is sent", res.IdempotencyHeader)
		}
	})
}

// checkRefusal checks that err is bad input, answered INVALID_ARGUMENT
// without the (invalid) header value in the message.
func checkRefusal(t *testing.T, err error, value string) {
	t.Helper()
	var invalid *invalidError
	var urlErr *egress.URLError
	if !errors.As(err, &invalid) && !errors.As(err, &urlErr) {
		t.Fatalf("refusal is neither an *invalidError nor an *egress.URLError: %T %v", err, err)
	}
	st, _ := status.FromError(toStatus(err, nil, ""))
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("refusal %v answers %v, want InvalidArgument", err, st.Code())
	}
	if !httpguts.ValidHeaderFieldValue(value) && len(value) > 3 && strings.Contains(st.Message(), value) {
		t.Fatalf("message echoes the header value: %q", st.Message())
	}
}

// checkCall checks what validate let through.
func checkCall(t *testing.T, c *call, rawURL, method, name, value, key string, bodyLen int) {
	t.Helper()
	u := c.u
	want, err := egress.ParseURL(rawURL)
	switch {
	case err != nil:
		t.Fatalf("validate took %q, which egress.ParseURL refuses: %v", rawURL, err)
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "", u.Hostname() == "", u.User != nil:
		t.Fatalf("validate took %q as %q", rawURL, u)
	case u.String() != want.String():
		t.Fatalf("validate took %q as %q; egress.ParseURL says %q", rawURL, u, want)
	}
	if method == "" {
		method = http.MethodGet
	}
	if c.method != method || !httpguts.ValidHeaderFieldName(c.method) || strings.ContainsAny(c.method, " \r\n\x00") {
		t.Fatalf("method %q taken as %q", method, c.method)
	}
	for k, vs := range c.header {
		if !httpguts.ValidHeaderFieldName(k) || slices.Contains(replayHeaders, http.CanonicalHeaderKey(k)) {
			t.Fatalf("header name %q let through", k)
		}
		for _, v := range vs {
			if strings.ContainsAny(v, "\r\n\x00") || !httpguts.ValidHeaderFieldValue(v) {
				t.Fatalf("header %s: value %q let through", k, v)
			}
		}
	}
	if (name != "" || value != "") && !slices.Equal(c.header.Values(name), []string{value}) {
		t.Fatalf("header %q: %q sent as %q", name, value, c.header.Values(name))
	}
	if c.key != key || len(key) > MaxKeyLength || strings.IndexFunc(key, func(r rune) bool { return r < 0x20 || r > 0x7e }) >= 0 {
		t.Fatalf("idempotency key %q let through", key)
	}
	if len(c.body) != bodyLen {
		t.Fatalf("body of %d bytes became %d", bodyLen, len(c.body))
	}
	a := c.ask
	for _, d := range []time.Duration{a.ConnectTimeout, a.ReadTimeout, a.AttemptTimeout, a.TotalTimeout, a.InitialBackoff, a.MaxBackoff} {
		if d < 0 {
			t.Fatalf("negative duration let through: %+v", a)
		}
	}
	if a.Multiplier != 0 && !(a.Multiplier >= 1 && !math.IsInf(a.Multiplier, 0)) {
		t.Fatalf("multiplier %v let through", a.Multiplier)
	}
	for _, s := range a.RetryOn {
		if s < 400 || s > 599 {
			t.Fatalf("retry on %d let through", s)
		}
	}
}
