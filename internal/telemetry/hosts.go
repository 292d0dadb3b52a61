package telemetry

import "sync"

// OtherHost is the label of every host past a HostLabels' bound.
const OtherHost = "_other"

// HostLabels bounds the cardinality of a metric's host label: the first Max
// distinct hosts are labelled as themselves, every later one as OtherHost.
// Only hosts are ever labels, never paths or queries. Safe for concurrent
// use; build it with NewHostLabels.
type HostLabels struct {
	max  int
	mu   sync.RWMutex
	seen map[string]struct{}
}

// DefaultMaxHosts is the default bound of NewHostLabels.
const DefaultMaxHosts = 256

// NewHostLabels returns labels bounded to max hosts (DefaultMaxHosts when
// max < 1).
func NewHostLabels(max int) *HostLabels {
	if max < 1 {
		max = DefaultMaxHosts
	}
	return &HostLabels{max: max, seen: make(map[string]struct{}, max)}
}

// Label returns the label for host.
func (h *HostLabels) Label(host string) string {
	h.mu.RLock()
	_, ok := h.seen[host]
	full := len(h.seen) >= h.max
	h.mu.RUnlock()
	switch {
	case ok:
		return host
	case full:
		return OtherHost
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.seen[host]; ok {
		return host
	}
	if len(h.seen) >= h.max {
		return OtherHost
	}
	h.seen[host] = struct{}{}
	return host
}
