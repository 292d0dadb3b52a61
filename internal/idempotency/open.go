package idempotency

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Open returns the store that rawURL names:
//
//	memory:                          a Memory store
//	file:PATH or file:///ABS/PATH    a File store at PATH; missing parent directories are created
//	redis://[[USER]:PASS@]HOST:PORT/DB[?OPTIONS]
//	rediss://...                     a Redis store (rediss uses TLS); go-redis's URL options apply
//
// The Redis client Open creates honours each call's ctx deadline (go-redis ContextTimeoutEnabled).
// Open does not contact Redis: fetchd starts while Redis is down and fails keyed requests closed
// (ErrUnavailable) until it is back. Open fails only for an unusable URL, invalid options, or a file
// that cannot be opened. Error messages never repeat the URL, which may hold a password. The caller
// must Close the store; for Redis that closes the client Open created.
func Open(ctx context.Context, rawURL string, opts ...Option) (Store, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	scheme, rest, ok := strings.Cut(rawURL, ":")
	if !ok || scheme == "" {
		return nil, errors.New("idempotency: store URL has no scheme (want memory:, file:PATH, redis:// or rediss://)")
	}
	switch strings.ToLower(scheme) {
	case "memory":
		if rest != "" {
			return nil, errors.New("idempotency: memory store URL takes nothing after \"memory:\"")
		}
		cfg, err := newConfig(DefaultMemoryMaxBytes, opts)
		if err != nil {
			return nil, err
		}
		return newMemory(cfg), nil
	case "file":
		path, err := filePath(rawURL, rest)
		if err != nil {
			return nil, err
		}
		f, err := OpenFile(path, opts...)
		if err != nil {
			return nil, err // not a typed nil *File inside a non-nil Store
		}
		return f, nil
	case "redis", "rediss":
		cfg, err := newConfig(0, opts)
		if err != nil {
			return nil, err
		}
		o, err := redis.ParseURL(rawURL)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) { // its message quotes the URL
				err = ue.Err
			}
			return nil, fmt.Errorf("idempotency: redis store URL: %w", err)
		}
		// Let each call's ctx deadline bound its network I/O, not only go-redis's fixed timeouts.
		o.ContextTimeoutEnabled = true
		// Keyed requests fail closed while Redis is down; answer them quickly
		// rather than after go-redis's default 3 retries with backoff. One
		// retry still rides over a pooled connection that Redis closed.
		if u, err := url.Parse(rawURL); err == nil && !u.Query().Has("max_retries") {
			o.MaxRetries = 1
		}
		return &Redis{client: redis.NewClient(o), cfg: cfg, owned: true}, nil
	}
	return nil, fmt.Errorf("idempotency: unsupported store URL scheme %q (want memory:, file:, redis:// or rediss://)", scheme)
}

// filePath returns the path of a file: URL: the rest of the URL as it is ("file:data/idem.db",
// "file:/var/lib/fetchd/idem.db"), or the decoded path of "file:///..." and "file://localhost/...".
func filePath(rawURL, rest string) (string, error) {
	path := rest
	if strings.HasPrefix(rest, "//") {
		u, err := url.Parse(rawURL)
		if err != nil {
			return "", errors.New("idempotency: malformed file store URL")
		}
		if u.Host != "" && u.Host != "localhost" {
			return "", fmt.Errorf("idempotency: file store URL names host %q; only local files are supported", u.Host)
		}
		path = u.Path
	}
	if path == "" {
		return "", errors.New("idempotency: file store URL has no path (want file:PATH)")
	}
	return path, nil
}
