package idempotency

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestOpen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		url     string
		want    string // the store's type, or "" for an error
		errHas  string // for an error: a part of its message
		created string // for a file store: the path that must exist afterwards
	}{
		{url: "memory:", want: "*idempotency.Memory"},
		{url: "MEMORY:", want: "*idempotency.Memory"},
		{url: "memory:x", errHas: "nothing after"},
		{url: "file:" + filepath.Join(dir, "a", "b", "idem.db"), want: "*idempotency.File", created: filepath.Join(dir, "a", "b", "idem.db")},
		{url: "file://" + filepath.Join(dir, "url", "idem.db"), want: "*idempotency.File", created: filepath.Join(dir, "url", "idem.db")},
		{url: "file://localhost" + filepath.Join(dir, "local.db"), want: "*idempotency.File", created: filepath.Join(dir, "local.db")},
		{url: "file:", errHas: "no path"},
		{url: "file://otherhost/x.db", errHas: "only local files"},
		{url: "redis://127.0.0.1:6379/0", want: "*idempotency.Redis"},
		{url: "redis://127.0.0.1:1/3", want: "*idempotency.Redis"}, // nothing listens: still opens
		{url: "rediss://user:pass@redis.example:6380/1", want: "*idempotency.Redis"},
		{url: "redis://127.0.0.1:6379/notadb", errHas: "invalid database"},
		{url: "redis://:s3cret@host:port/0", errHas: "invalid port"},
		{url: "redis://127.0.0.1:6379/0?bogus=1", errHas: "unexpected option"},
		{url: "ftp://example.com", errHas: `unsupported store URL scheme "ftp"`},
		{url: "", errHas: "no scheme"},
		{url: "/var/lib/idem.db", errHas: "no scheme"},
	}
	for _, tt := range tests {
		s, err := Open(t.Context(), tt.url, WithSweepInterval(0))
		if tt.want == "" {
			if err == nil {
				_ = s.Close()
				t.Errorf("Open(%q) succeeded, want an error containing %q", tt.url, tt.errHas)
			} else if !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("Open(%q) = %v, want an error containing %q", tt.url, err, tt.errHas)
			} else if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("Open(%q) error leaks the password: %v", tt.url, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Open(%q): %v", tt.url, err)
			continue
		}
		if got := typeName(s); got != tt.want {
			t.Errorf("Open(%q) = %s, want %s", tt.url, got, tt.want)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close of %q: %v", tt.url, err)
		}
		if tt.created != "" {
			if _, err := os.Stat(tt.created); err != nil {
				t.Errorf("Open(%q) did not create the file: %v", tt.url, err)
			}
		}
	}
}

func typeName(s Store) string {
	switch s.(type) {
	case *Memory:
		return "*idempotency.Memory"
	case *File:
		return "*idempotency.File"
	case *Redis:
		return "*idempotency.Redis"
	}
	return "?"
}

func TestOpenInvalidOptions(t *testing.T) {
	t.Parallel()
	for _, opt := range []Option{WithTTL(0), WithTTL(-time.Second), WithMaxBytes(0), WithNow(nil)} {
		for _, url := range []string{"memory:", "file:" + filepath.Join(t.TempDir(), "x.db"), "redis://127.0.0.1:6379/0"} {
			if s, err := Open(t.Context(), url, opt); err == nil {
				_ = s.Close()
				t.Errorf("Open(%q) with an invalid option succeeded", url)
			}
		}
	}
}
