package outbound

import "slices"

// retryable reports whether an attempt's outcome may be retried, before
// counting attempts or time. status is the response status (0 if none);
// class is the failure class ("" when a response arrived and was read).
//
//   - A response is retried only when its status is listed in retryOn (and is
//     400 or above), and only for a method that may be repeated (see
//     repeatable): a status means the upstream processed the request.
//   - connect_refused, connect_timeout and dns are retried for every method:
//     no connection was made, so nothing left (a connect timeout covers the
//     TCP and TLS handshakes, which come before any request byte).
//   - Other connection failures and timeouts (reset, read_timeout,
//     attempt_timeout, protocol) are retried for a method that may be
//     repeated: the request may have been processed.
//   - Everything else is final: a guard refusal, an oversized body, the
//     caller's cancel or deadline, the total timeout, TLS failures (a
//     certificate does not get better by asking again), unknown errors.
func retryable(method string, keyed bool, status int, class string, retryOn []int) bool {
	switch class {
	case "":
		return status >= 400 && slices.Contains(retryOn, status) && repeatable(method, keyed)
	case ClassConnectRefused, ClassConnectTimeout, ClassDNS:
		return true
	case ClassReset, ClassReadTimeout, ClassAttemptTimeout, ClassProtocol:
		return repeatable(method, keyed)
	default:
		return false
	}
}

// repeatable reports whether a request that may have reached the upstream
// may be sent again: the method is idempotent (RFC 9110 section 9.2.2), or
// the caller gave an idempotency key. Methods are case-sensitive: "get" is
// not GET.
func repeatable(method string, keyed bool) bool {
	if keyed {
		return true
	}
	switch method {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

// unsent reports whether a failure of this class proves that nothing reached
// the upstream, given that no connection was handed to the request and the
// transport did not repeat the send: the guard refused, the name did not
// resolve, or the TCP or TLS handshake failed or timed out.
func unsent(class string) bool {
	switch class {
	case ClassDenied, ClassDNS, ClassConnectRefused, ClassConnectTimeout, ClassTLS:
		return true
	}
	return false
}
