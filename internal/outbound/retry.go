package outbound

import "slices"

// retryable reports whether an attempt's outcome may be retried, before
// counting attempts or time. status is the response status (0 if none);
// class is the failure class ("" when a response arrived and was read);
// unsent says the attempt provably sent nothing: no connection was ever
// handed to it, the transport did not re-send it, and no status arrived.
//
//   - A response is retried only when its status is listed in retryOn (and is
//     400 or above), and only for a method that may be repeated (see
//     repeatable): a status means the upstream processed the request.
//   - Connection failures and timeouts (connect_refused, connect_timeout,
//     dns, reset, read_timeout, attempt_timeout, protocol) are retried for a
//     method that may be repeated, and for any method when the attempt was
//     unsent. A refused or timed-out connect (TCP and TLS handshakes come
//     before any request byte) or a DNS failure is unsent, unless the
//     transport re-sent the request within the attempt and it was the
//     re-dial that failed: the first send may have been processed. An
//     attempt cut off while it waited for a connection (MaxConnsPerHost) or
//     while dialling is unsent too, whatever ended it.
//   - Everything else is final: a guard refusal, an oversized body, the
//     caller's cancel or deadline, the total timeout, TLS failures (a
//     certificate does not get better by asking again), unknown errors.
func retryable(method string, keyed bool, status int, class string, retryOn []int, unsent bool) bool {
	switch class {
	case "":
		return status >= 400 && slices.Contains(retryOn, status) && repeatable(method, keyed)
	case ClassConnectRefused, ClassConnectTimeout, ClassDNS,
		ClassReset, ClassReadTimeout, ClassAttemptTimeout, ClassProtocol:
		return unsent || repeatable(method, keyed)
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
