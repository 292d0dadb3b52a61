package identity

import "time"

// Option configures an [Authenticator].
type Option func(*Authenticator)

// WithNow sets the clock the rate limiters read; the default is time.Now.
// A nil now is ignored.
func WithNow(now func() time.Time) Option {
	return func(a *Authenticator) {
		if now != nil {
			a.now = now
		}
	}
}
