package idempotency

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestEntryRoundTrip(t *testing.T) {
	t.Parallel()
	at := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	resp := sampleResponse()
	tests := []struct {
		name  string
		entry Entry
	}{
		{"in flight", Entry{Fingerprint: "abc", Token: 1, LeaseExpires: at, ExpiresAt: at.Add(time.Hour)}},
		{"completed", Entry{Fingerprint: strings.Repeat("f", 64), Token: 1 << 62, Completed: true, Response: &resp, ExpiresAt: at}},
		{"completed empty", Entry{Token: 3, Completed: true, Response: &Response{}, ExpiresAt: at}},
		{"empty fingerprint", Entry{Token: 2, LeaseExpires: at, ExpiresAt: at}},
		{"negative status", Entry{Token: 2, Completed: true, Response: &Response{Status: -1}, ExpiresAt: at}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := decodeEntry(appendEntry(nil, &tt.entry))
			if err != nil {
				t.Fatal(err)
			}
			wantEntry(t, got, &tt.entry)
		})
	}
}

// Every proper prefix of a record, and a record with trailing bytes, is corrupt: a torn or mixed-up
// value is never read as a different record.
func TestDecodeEntryRejectsDamage(t *testing.T) {
	t.Parallel()
	resp := sampleResponse()
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, e := range []Entry{
		{Fingerprint: "fp", Token: 300, LeaseExpires: at, ExpiresAt: at},
		{Fingerprint: "fp", Token: 300, Completed: true, Response: &resp, ExpiresAt: at},
	} {
		b := appendEntry(nil, &e)
		for n := range len(b) {
			if _, err := decodeEntry(b[:n]); !errors.Is(err, errCorrupt) {
				t.Fatalf("decode of %d of %d bytes: err = %v, want errCorrupt", n, len(b), err)
			}
		}
		if _, err := decodeEntry(append(bytes.Clone(b), 0)); !errors.Is(err, errCorrupt) {
			t.Fatalf("decode with a trailing byte: err = %v, want errCorrupt", err)
		}
	}
}

func TestDecodeCorrupt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"unknown version", []byte{2, 0, 1, 0, 0, 0}},
		{"huge header count", []byte{recordVersion, flagCompleted, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"length past the end", []byte{recordVersion, 0, 1, 0, 0, 5, 'a'}},
		{"overlong varint", []byte{recordVersion, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
	}
	for _, tt := range tests {
		if _, err := decodeEntry(tt.b); !errors.Is(err, errCorrupt) {
			t.Errorf("%s: err = %v, want errCorrupt", tt.name, err)
		}
	}
	if _, err := decodeResponse([]byte{0x90}); !errors.Is(err, errCorrupt) {
		t.Errorf("decodeResponse of a torn varint: err = %v, want errCorrupt", err)
	}
}

func TestRecordKey(t *testing.T) {
	t.Parallel()
	keys := []Key{
		{"a:b", "c"}, {"a", "b:c"}, {"", "ab"}, {"ab", ""}, {"a", "b"}, {"", ""},
		{AnonymousScope, "x"}, {strings.Repeat("s", 200), "x"}, {"\x01", "x"}, {"", "\x01x"},
	}
	seen := map[string]Key{}
	for _, k := range keys {
		rk := recordKey(k)
		if other, dup := seen[string(rk)]; dup {
			t.Errorf("recordKey(%q) = recordKey(%q)", k, other)
		}
		seen[string(rk)] = k
		got, err := keyFromRecordKey(rk)
		if err != nil || got != k {
			t.Errorf("keyFromRecordKey(recordKey(%q)) = %q, %v", k, got, err)
		}
	}
	if _, err := keyFromRecordKey([]byte{5, 'a'}); !errors.Is(err, errCorrupt) {
		t.Errorf("keyFromRecordKey of a short key: err = %v, want errCorrupt", err)
	}
}

// The expiry index must sort by time first, whatever the record keys.
func TestExpiryKeyOrder(t *testing.T) {
	t.Parallel()
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	early := expiryKey(at, recordKey(Key{"zzz", "zzz"}))
	late := expiryKey(at.Add(time.Nanosecond), recordKey(Key{"", ""}))
	if bytes.Compare(early, late) >= 0 {
		t.Fatal("an earlier expiry does not sort first")
	}
	if !bytes.Equal(expiryKey(time.Unix(-5, 0), nil), expiryKey(time.Unix(0, 0), nil)) {
		t.Fatal("times before 1970 do not clamp to zero")
	}
}
