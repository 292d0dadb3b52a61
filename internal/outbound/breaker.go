package outbound

import (
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"
)

// breaker is the circuit breaker of one target. It is safe for concurrent
// use.
//
// Closed, it lets every attempt through and counts their outcomes; it opens
// after cfg.ConsecutiveFailures failures in a row, or when the failures over
// cfg.Window reach cfg.FailureRatio of at least cfg.MinRequests attempts.
// Open, it refuses every attempt until cfg.OpenFor has passed; it is then
// half-open and lets cfg.HalfOpenProbes attempts through at a time (refusing
// the others): a probe's success closes it with every count reset, a probe's
// failure opens it again for cfg.OpenFor.
//
// Each state change starts a new generation; an outcome is counted only in
// the generation its attempt was let through in, so an attempt that started
// before the breaker opened cannot close or re-open it later.
type breaker struct {
	cfg Breaker // normalized; never changes
	key string  // the target, for messages

	mu        sync.Mutex
	state     breakerState
	gen       uint64
	streak    int    // consecutive failures while closed
	counts    window // while closed; a: attempts, b: failures
	openUntil time.Time
	why       string // why it opened, for messages: "after 5 consecutive failures"
	probes    int    // probes in flight while half-open
}

type breakerState int

const (
	breakerClosed breakerState = iota
	breakerOpen
	breakerHalfOpen
)

// outcome is what an attempt's result means to the breaker.
type outcome int

const (
	outcomeNeutral outcome = iota // says nothing about the upstream
	outcomeSuccess
	outcomeFailure
)

func newBreaker(cfg Breaker, key string, now time.Time) *breaker {
	return &breaker{cfg: cfg, key: key, counts: newWindow(cfg.Window, now)}
}

// normalized makes a Breaker comparable and usable: HalfOpenProbes below 1
// reads as 1, MinRequests below 1 as 1, a NaN or negative ratio as 0 (not
// used), negative durations as 0.
func (b Breaker) normalized() Breaker {
	b.ConsecutiveFailures = max(b.ConsecutiveFailures, 0)
	if !(b.FailureRatio > 0) {
		b.FailureRatio = 0
	}
	b.MinRequests = max(b.MinRequests, 1)
	b.Window = max(b.Window, 0)
	b.OpenFor = max(b.OpenFor, 0)
	b.HalfOpenProbes = max(b.HalfOpenProbes, 1)
	return b
}

// verdict tells what an attempt's result says about the upstream. class is
// the attempt's failure class ("" when a response arrived and was read),
// status its status (0 for none). A failure is a status of 500, 502, 503 or
// 504, or a failure that is the upstream's doing: refused, timed out, reset,
// unresolvable, a failed TLS handshake, an unreadable answer; such a failure
// counts even after a status arrived (the body broke off). Anything the
// caller, the deadline, the guard or the body limit ended, and unknown
// errors, count neither way; so do timeouts when shortened is true (the
// caller asked for shorter timeouts than the policy's: Policy.ShortenedTimeouts).
// Any other status is a success.
func verdict(status int, class string, shortened bool) outcome {
	switch class {
	case ClassConnectTimeout, ClassReadTimeout, ClassAttemptTimeout:
		if shortened {
			return outcomeNeutral
		}
		return outcomeFailure
	case "":
		switch status {
		case http.StatusInternalServerError, http.StatusBadGateway,
			http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return outcomeFailure
		}
		return outcomeSuccess
	case ClassConnectRefused, ClassDNS, ClassTLS, ClassReset, ClassProtocol:
		return outcomeFailure
	}
	return outcomeNeutral
}

// standing grades the breaker for the protections table: guarding when it
// is open or half-open (an open one whose OpenFor has passed still limits
// the calls to probes), active when closed with a failure in a row or in its
// window, idle otherwise.
func (b *breaker) standing(now time.Time) standing {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state != breakerClosed {
		return standingGuarding
	}
	if b.streak > 0 {
		return standingActive
	}
	if _, failures := b.counts.sum(now); failures > 0 {
		return standingActive
	}
	return standingIdle
}

// permit is the breaker's leave for one attempt. The zero permit belongs to
// no breaker and does nothing. It is used by one goroutine.
type permit struct {
	b     *breaker
	gen   uint64
	probe bool // a half-open probe: holds one of the probe places
}

// acquire asks for a permit for one attempt at now. Refused, it returns a message
// for a person saying why and for how long.
func (b *breaker) acquire(now time.Time) (permit, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == breakerOpen {
		if now.Before(b.openUntil) {
			return permit{}, fmt.Sprintf("circuit breaker for %s is open %s; next probe in %s",
				b.key, b.why, human(b.openUntil.Sub(now)))
		}
		b.state, b.probes = breakerHalfOpen, 0
		b.gen++
	}
	if b.state == breakerHalfOpen {
		if b.probes >= b.cfg.HalfOpenProbes {
			return permit{}, fmt.Sprintf("circuit breaker for %s is half-open: probe in progress", b.key)
		}
		b.probes++
		return permit{b: b, gen: b.gen, probe: true}, ""
	}
	return permit{b: b, gen: b.gen}, ""
}

// settle counts the outcome of the attempt p let through and ends p; later
// calls do nothing.
func (p *permit) settle(o outcome, now time.Time) {
	b, gen := p.b, p.gen
	if b == nil {
		return
	}
	*p = permit{}
	b.mu.Lock()
	defer b.mu.Unlock()
	if gen != b.gen {
		return // the breaker changed state since: this attempt's news is stale
	}
	switch b.state {
	case breakerHalfOpen:
		switch o {
		case outcomeSuccess:
			b.close(now)
		case outcomeFailure:
			b.open(now, "after a half-open probe failed")
		default:
			b.probes--
		}
	case breakerClosed:
		switch o {
		case outcomeSuccess:
			b.streak = 0
			b.counts.add(now, 1, 0)
		case outcomeFailure:
			b.streak++
			b.counts.add(now, 1, 1)
			b.trip(now)
		}
	}
}

// cancel gives p back unused: a probe place is freed, nothing is counted.
func (p *permit) cancel() {
	b := p.b
	if b == nil {
		return
	}
	gen, probe := p.gen, p.probe
	*p = permit{}
	if !probe {
		return
	}
	b.mu.Lock()
	if gen == b.gen && b.state == breakerHalfOpen {
		b.probes--
	}
	b.mu.Unlock()
}

// trip opens the closed breaker if its counts call for it. b.mu is held.
func (b *breaker) trip(now time.Time) {
	if n := b.cfg.ConsecutiveFailures; n > 0 && b.streak >= n {
		b.open(now, fmt.Sprintf("after %d consecutive failures", b.streak))
		return
	}
	if b.cfg.FailureRatio <= 0 || b.cfg.Window <= 0 {
		return
	}
	attempts, failures := b.counts.sum(now)
	if attempts >= int64(b.cfg.MinRequests) && float64(failures) >= b.cfg.FailureRatio*float64(attempts) {
		b.open(now, fmt.Sprintf("after %d of %d attempts failed within %s", failures, attempts, human(b.cfg.Window)))
	}
}

// open opens the breaker for cfg.OpenFor. b.mu is held.
func (b *breaker) open(now time.Time, why string) {
	b.state, b.why, b.probes = breakerOpen, why, 0
	b.openUntil = now.Add(b.cfg.OpenFor)
	b.gen++
}

// close closes the breaker with every count reset. b.mu is held.
func (b *breaker) close(now time.Time) {
	b.state, b.why, b.probes, b.streak = breakerClosed, "", 0, 0
	b.counts = newWindow(b.cfg.Window, now)
	b.gen++
}

// human renders a wait for a person: whole seconds from 10s up, tenths of a
// second from 1s, milliseconds below.
func human(d time.Duration) string {
	switch {
	case d >= math.MaxInt64/2:
		return "a very long time"
	case d >= 10*time.Second:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Millisecond).String()
	}
}
