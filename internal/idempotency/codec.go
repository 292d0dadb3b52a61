package idempotency

import (
	"encoding/binary"
	"errors"
	"time"
)

// The file and Redis stores encode records by hand with encoding/binary varints: a record is a few
// integers and byte strings, so this is both the most compact form (a JSON body would be base64,
// a third larger, and gob repeats type information in every standalone value) and the cheapest to
// decode inside a bbolt transaction. The leading version byte lets a later fetchd change the layout
// and still read old records.
//
// Record (file store value), version 1:
//
//	version byte (1) | flags byte (bit 0: completed) | token uvarint
//	| lease expiry varint (unix ns, only when in flight) | expiry varint (unix ns)
//	| fingerprint (uvarint length, bytes) | response (only when completed)
//
// Response (also the Redis "resp" field):
//
//	status varint | header count uvarint | per header: name, value (uvarint length, bytes)
//	| body (uvarint length, bytes) | flags byte (bit 0: body too large)

const recordVersion = 1

const flagCompleted = 1 << 0

const respFlagBodyTooLarge = 1 << 0

// errCorrupt means a stored record could not be decoded.
var errCorrupt = errors.New("idempotency: corrupt record")

func appendEntry(b []byte, e *Entry) []byte {
	var flags byte
	if e.Completed {
		flags |= flagCompleted
	}
	b = append(b, recordVersion, flags)
	b = binary.AppendUvarint(b, e.Token)
	if !e.Completed {
		b = binary.AppendVarint(b, e.LeaseExpires.UnixNano())
	}
	b = binary.AppendVarint(b, e.ExpiresAt.UnixNano())
	b = appendString(b, e.Fingerprint)
	if e.Completed {
		b = appendResponse(b, e.Response)
	}
	return b
}

func decodeEntry(b []byte) (*Entry, error) {
	d := decoder{b: b}
	if d.byte() != recordVersion {
		return nil, errCorrupt
	}
	flags := d.byte()
	e := &Entry{Completed: flags&flagCompleted != 0}
	e.Token = d.uvarint()
	if !e.Completed {
		e.LeaseExpires = time.Unix(0, d.varint())
	}
	e.ExpiresAt = time.Unix(0, d.varint())
	e.Fingerprint = string(d.bytes())
	if e.Completed {
		e.Response = d.response()
	}
	if d.err != nil || len(d.b) != 0 {
		return nil, errCorrupt
	}
	return e, nil
}

// appendResponse appends r's encoding; a nil r encodes as an empty response.
func appendResponse(b []byte, r *Response) []byte {
	if r == nil {
		r = &Response{}
	}
	b = binary.AppendVarint(b, int64(r.Status))
	b = binary.AppendUvarint(b, uint64(len(r.Header)))
	for _, h := range r.Header {
		b = appendString(b, h.Name)
		b = appendString(b, h.Value)
	}
	b = appendBytes(b, r.Body)
	var flags byte
	if r.BodyTooLarge {
		flags |= respFlagBodyTooLarge
	}
	return append(b, flags)
}

func decodeResponse(b []byte) (*Response, error) {
	d := decoder{b: b}
	r := d.response()
	if d.err != nil || len(d.b) != 0 {
		return nil, errCorrupt
	}
	return r, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// decoder reads what the append functions wrote. The first error sticks; later reads return zero
// values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.err = errCorrupt
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes returns a copy of the next length-prefixed byte string, so that the result stays valid after
// the buffer it came from (a bbolt page) is gone.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errCorrupt
		return nil
	}
	p := append([]byte{}, d.b[:n]...)
	d.b = d.b[n:]
	return p
}

func (d *decoder) response() *Response {
	r := &Response{Status: int(d.varint())}
	n := d.uvarint()
	// Every header takes at least two bytes, which bounds what a corrupt count can allocate.
	if n > uint64(len(d.b))/2 {
		d.err = errCorrupt
		return nil
	}
	if n > 0 {
		r.Header = make([]HeaderField, 0, n)
	}
	for range n {
		name := d.bytes()
		value := d.bytes()
		r.Header = append(r.Header, HeaderField{Name: string(name), Value: string(value)})
	}
	r.Body = d.bytes()
	r.BodyTooLarge = d.byte()&respFlagBodyTooLarge != 0
	if d.err != nil {
		return nil
	}
	return r
}

// recordKey is a key's bbolt key: the scope's length as a uvarint, the scope, then the ID. The length
// prefix keeps ("a:b", "c") and ("a", "b:c") apart.
func recordKey(k Key) []byte {
	b := make([]byte, 0, binary.MaxVarintLen64+len(k.Scope)+len(k.ID))
	b = binary.AppendUvarint(b, uint64(len(k.Scope)))
	b = append(b, k.Scope...)
	return append(b, k.ID...)
}

// keyFromRecordKey inverts recordKey.
func keyFromRecordKey(b []byte) (Key, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return Key{}, errCorrupt
	}
	b = b[w:]
	return Key{Scope: string(b[:n]), ID: string(b[n:])}, nil
}

// expiryKey is a record's key in the file store's expiry index: its expiry as big-endian unix
// nanoseconds (so bbolt's byte order is time order), then its record key.
func expiryKey(expiresAt time.Time, rk []byte) []byte {
	ns := max(expiresAt.UnixNano(), 0)
	b := make([]byte, 8, 8+len(rk))
	binary.BigEndian.PutUint64(b, uint64(ns))
	return append(b, rk...)
}
