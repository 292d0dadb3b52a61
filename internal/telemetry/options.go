package telemetry

import (
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Measurement is the options of one measurement's attribute set, built once:
// recording with metric.WithAttributes builds, sorts and hashes a new set
// and boxes a new option on every call (four or five allocations); these are
// reused, so a measurement allocates nothing.
type Measurement struct {
	Record []metric.RecordOption
	Add    []metric.AddOption
}

// NewMeasurement returns the Measurement of attrs.
func NewMeasurement(attrs ...attribute.KeyValue) *Measurement {
	opt := metric.WithAttributeSet(attribute.NewSet(attrs...))
	return &Measurement{Record: []metric.RecordOption{opt}, Add: []metric.AddOption{opt}}
}

// Measurements caches the Measurement of each pair of values of two
// attribute keys, or of each value of one key when the second key is "".
// The caller bounds the values (HostLabels for hosts, a fixed list for
// outcomes): the cache keeps every pair it is asked for.
type Measurements struct {
	k1, k2 attribute.Key
	mu     sync.RWMutex
	m      map[[2]string]*Measurement
}

// NewMeasurements returns an empty cache for the keys k1 and k2.
func NewMeasurements(k1, k2 attribute.Key) *Measurements {
	return &Measurements{k1: k1, k2: k2, m: make(map[[2]string]*Measurement)}
}

// Get returns the Measurement of k1=v1, k2=v2.
func (c *Measurements) Get(v1, v2 string) *Measurement {
	key := [2]string{v1, v2}
	c.mu.RLock()
	m, ok := c.m[key]
	c.mu.RUnlock()
	if ok {
		return m
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if m, ok := c.m[key]; ok {
		return m
	}
	if c.k2 == "" {
		m = NewMeasurement(c.k1.String(v1))
	} else {
		m = NewMeasurement(c.k1.String(v1), c.k2.String(v2))
	}
	c.m[key] = m
	return m
}
