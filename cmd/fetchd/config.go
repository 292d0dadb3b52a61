package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/fetchd/fetchd/internal/egress"
	"github.com/fetchd/fetchd/internal/policy"
)

// DefaultReloadInterval is how often the policy file is checked for changes.
const DefaultReloadInterval = 2 * time.Second

// loadPolicy returns the policy fetchd starts with: the --config file, or the
// embedded default.
func (m *Main) loadPolicy() (*policy.Set, error) {
	if m.preloaded != nil {
		return m.preloaded, nil
	}
	if m.Config == "" {
		return policy.DefaultSet(), nil
	}
	set, err := policy.LoadFile(m.Config)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	return set, nil
}

// allowCIDRs is the egress allow list under set: --allow-cidr when given on
// the command line (flags win), else the file's egress.allow_cidrs.
func (m *Main) allowCIDRs(set *policy.Set) []netip.Prefix {
	if len(m.AllowCIDRs) > 0 {
		return m.AllowCIDRs
	}
	return set.AllowCIDRs()
}

// Reload reads the policy file again and, if it is valid, makes it the
// running policy: calls that start afterwards use it, calls in flight finish
// under the policy they started with. A bad file is refused, the running
// policy stays, and the log says why. Server settings (listen, admin, store,
// drain timeout) need a restart; a change to them is logged.
func (m *Main) Reload() error {
	if m.Config == "" {
		m.Logger.Warn("fetchd: reload asked, but fetchd runs on the embedded default policy (no --config)")
		return nil
	}
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	set, err := policy.LoadFile(m.Config)
	if err != nil {
		m.Logger.Error("fetchd: policy reload refused; the running policy stays", "config", m.Config, "error", err)
		m.notifyReload(nil, err)
		return err
	}
	old := m.policy.Load()
	if set.Digest() == old.Digest() {
		return nil
	}
	if !sameServer(set.Server(), old.Server()) {
		m.Logger.Warn("fetchd: the policy file's server section changed; restart fetchd to apply it", "config", m.Config)
	}
	if set.IdempotencyTTL() != old.IdempotencyTTL() {
		m.Logger.Warn("fetchd: idempotency.ttl changed; it applies to the store from the next restart", "config", m.Config,
			"running", old.IdempotencyTTL(), "file", set.IdempotencyTTL())
	}
	if len(m.AllowCIDRs) > 0 && !slices.Equal(set.AllowCIDRs(), old.AllowCIDRs()) {
		m.Logger.Warn("fetchd: egress.allow_cidrs changed in the file, but --allow-cidr on the command line wins", "config", m.Config)
	}
	guard := m.guard
	if cidrs := m.allowCIDRs(set); !slices.Equal(cidrs, m.allowCIDRs(old)) {
		guard = egress.New(egress.WithAllow(cidrs...))
		m.guard = guard
		m.client.SetGuard(guard) // retires transports dialled under the old guard once idle
	}
	m.client.SetRedactedQueryParams(set.RedactQueryParams()...)
	m.auth.Update(set.Identity())
	m.svc.SetPolicy(set, guard)
	m.policy.Store(set)
	m.Logger.Info("fetchd: policy reloaded", "config", m.Config, "digest", short(set.Digest()), "policies", set.PolicyNames())
	m.notifyReload(set, nil)
	return nil
}

func (m *Main) notifyReload(set *policy.Set, err error) {
	if m.onReload != nil {
		m.onReload(set, err)
	}
}

// watchConfig reloads the policy file when it changes (a new modification
// time, size or inode; an editor's rename-over or a ConfigMap's symlink swap
// both count) and the change has settled: the file must look the same on
// two ticks in a row, so a file caught half-written is not loaded. The first
// look compares against nothing, so an edit made while fetchd was starting
// is not missed (Reload does nothing when the content is unchanged). It
// returns when ctx ends.
func (m *Main) watchConfig(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var loaded, pending stamp
	missing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur, err := fileStamp(m.Config)
		if err != nil {
			if !missing {
				m.Logger.Warn("fetchd: cannot read the policy file; the running policy stays", "config", m.Config, "error", err)
			}
			missing, pending = true, stamp{}
			continue
		}
		missing = false
		switch {
		case cur == loaded:
		case cur != pending:
			pending = cur // changed since the last tick: let it settle
		default:
			loaded = cur
			m.Reload() // logs its own outcome
		}
	}
}

type stamp struct {
	mod  time.Time
	size int64
	ino  uint64
}

func fileStamp(path string) (stamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}, err
	}
	return stamp{mod: fi.ModTime(), size: fi.Size(), ino: inode(fi)}, nil
}

func short(digest string) string {
	if len(digest) > 12 {
		return digest[:12]
	}
	return digest
}

// applyServer fills the server settings the command line did not give
// (given names the flags that were) from the file's server section.
func (m *Main) applyServer(s policy.Server, given map[string]bool) {
	if s.Listen != nil && !given["listen"] {
		m.Listen = *s.Listen
	}
	if s.Admin != nil && !given["admin"] {
		m.Admin = *s.Admin
	}
	if s.Store != nil && !given["store"] {
		m.Store = *s.Store
	}
	if s.DrainTimeout != nil && !given["drain-timeout"] {
		m.DrainTimeout = *s.DrainTimeout
	}
}

// sameServer reports whether two server sections say the same.
func sameServer(a, b policy.Server) bool {
	return eq(a.Listen, b.Listen) && eq(a.Admin, b.Admin) && eq(a.Store, b.Store) && eq(a.DrainTimeout, b.DrainTimeout)
}

func eq[T comparable](a, b *T) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}
