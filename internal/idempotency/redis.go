package idempotency

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a Store in Redis, shared by every fetchd replica that points at the same server. Claim,
// Complete and Release are Lua scripts, so each compare-and-set is atomic on the server.
//
// Key layout: a record is the hash
//
//	fetchd:idem:v1:<len(scope)>:<scope>:<id>
//
// where <len(scope)> is the scope's length in bytes, in decimal. The length fixes where the scope
// ends, so ("a:b", "c") and ("a", "b:c") are different keys whatever bytes scope and id hold. Its
// fields are fp (fingerprint), tok (fencing token), done ("0" in flight, "1" completed), lease and
// exp (lease and record expiry, unix milliseconds), cid (the claim's random ID, while in flight) and
// resp (the encoded response, see codec.go). Fencing tokens come from INCR on the single key
// fetchd:idem:v1:token, which no record key can equal (a record key's first byte after the prefix is
// a digit). Each script touches a record and, for Claim, the counter, so on Redis Cluster both would
// have to share a slot; fetchd supports standalone and Sentinel-managed Redis.
//
// Fencing tokens: the counter can go back (a restart without persistence, a failover to a replica
// that missed the last writes), so a claim's token is also at least one more than the token the
// record held before, if any, and than the Redis server's clock (TIME) in microseconds; the counter
// is moved up to the token issued. Tokens therefore keep increasing unless the Redis server that
// issues the next token has a clock behind the one that issued the lost tokens by more than the time
// in between (a failover takes seconds; keep the Redis servers' clocks in sync too), or tokens were
// issued faster than one per microsecond just before the counter went back.
//
// Retries: go-redis sends a command again when the connection fails before its reply arrives (Open
// allows one retry), so the claim script can run twice for one Claim. Each Claim carries a random
// claim ID, and a run that finds an in-flight claim with its own ID returns that claim's token
// rather than reporting it as someone else's.
//
// Expiry and clocks: lease and record expiry are decided with the WithNow clock of the fetchd that
// calls, passed to the scripts as an argument, not with Redis's clock. Each replica therefore judges
// a lease by its own clock: replicas whose clocks disagree by d see a lease end up to d early or
// late, and one whose clock runs ahead can take over a claim that is still being sent. Replica
// clocks must agree to well within the margin between a request's total timeout and its lease
// (fetchd leases a key for its total timeout plus 10s); run NTP on every replica. Each key also
// carries a PEXPIRE of its remaining lifetime plus redisExpiryMargin, so Redis deletes it itself
// shortly after it has logically expired.
//
// Memory: WithMaxBytes and WithSweepInterval are not used; Redis's own expiry and its maxmemory
// bound what the store holds, across all replicas. Redis must run with maxmemory-policy noeviction:
// under any other policy a full Redis evicts live claims and stored responses (the volatile-*
// policies pick exactly these keys, which all carry a PEXPIRE), and a duplicate request is then
// sent again. Under noeviction a full Redis refuses writes, Claim and Complete return ErrUnavailable,
// and fetchd fails keyed requests closed until there is room. CheckConfig checks the policy.
//
// Errors: anything but a missing key (a network error, a timeout, a server error) is ErrUnavailable
// wrapping the cause; fetchd fails keyed requests closed then and keeps serving the others. A call
// cut short because its ctx ended returns ctx's error instead.
//
// All methods are safe for concurrent use.
type Redis struct {
	client redis.UniversalClient
	cfg    config
	owned  bool // Close closes client
	closed atomic.Bool
	once   sync.Once
	err    error
}

const (
	redisPrefix   = "fetchd:idem:v1:"
	redisTokenKey = redisPrefix + "token"
	// redisExpiryMargin is added to every PEXPIRE so that a key outlives its logical expiry a little,
	// which absorbs clock skew between fetchd and Redis.
	redisExpiryMargin = time.Minute
)

// NewRedis returns a store that uses client. The caller keeps ownership of client: Close does not
// close it. NewRedis does not contact Redis. It panics if an option is invalid (Open reports the same
// problems as errors).
func NewRedis(client redis.UniversalClient, opts ...Option) *Redis {
	return &Redis{client: client, cfg: mustConfig(0, opts)}
}

// redisKey is key's Redis key; see the Redis type for the layout.
func redisKey(key Key) string {
	return redisPrefix + strconv.Itoa(len(key.Scope)) + ":" + key.Scope + ":" + key.ID
}

// claimScript takes the record KEYS[1] if it is absent, expired or an in-flight claim whose lease has
// ended, and otherwise returns it; an in-flight claim with the caller's claim ID is the caller's own,
// from an earlier run of this same Claim, and its token is returned. The new token is INCR of the
// counter KEYS[2], raised when needed above the record's previous token and the server's clock in
// microseconds (exact in Lua's doubles below 2^53, until the year 2255). Numbers are written with
// string.format('%d'), as Lua would otherwise write large ones in exponent form.
// ARGV: now, fingerprint, lease expiry, record expiry (unix ms), PEXPIRE (ms), claim ID.
// Reply: {1, token} when the caller holds the key, or {0, fp, tok, done, lease, exp, resp}.
var claimScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local r = redis.call('HMGET', KEYS[1], 'fp', 'tok', 'done', 'lease', 'exp', 'resp', 'cid')
if r[2] and tonumber(r[5]) > now and (r[3] == '1' or tonumber(r[4]) > now) then
  if r[3] == '0' and r[7] == ARGV[6] then
    return {1, r[2]}
  end
  return {0, r[1], r[2], r[3], r[4] or '', r[5], r[6] or ''}
end
local t = redis.call('TIME')
local floor = tonumber(t[1]) * 1000000 + tonumber(t[2])
if r[2] and tonumber(r[2]) > floor then
  floor = tonumber(r[2])
end
local tok = redis.call('INCR', KEYS[2])
if tok <= floor then
  tok = floor + 1
  redis.call('SET', KEYS[2], string.format('%d', tok))
end
tok = string.format('%d', tok)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'fp', ARGV[2], 'tok', tok, 'done', '0', 'lease', ARGV[3], 'exp', ARGV[4], 'cid', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {1, tok}
`)

// completeScript stores the response iff KEYS[1] is a live in-flight claim with token ARGV[2].
// ARGV: now (unix ms), token, encoded response, record expiry (unix ms), PEXPIRE (ms).
var completeScript = redis.NewScript(`
local r = redis.call('HMGET', KEYS[1], 'tok', 'done', 'exp')
if r[1] ~= ARGV[2] or r[2] ~= '0' or tonumber(r[3]) <= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'done', '1', 'resp', ARGV[3], 'exp', ARGV[4])
redis.call('HDEL', KEYS[1], 'lease', 'cid')
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
`)

// releaseScript deletes KEYS[1] iff it is a live in-flight claim with token ARGV[2].
// ARGV: now (unix ms), token.
var releaseScript = redis.NewScript(`
local r = redis.call('HMGET', KEYS[1], 'tok', 'done', 'exp')
if r[1] ~= ARGV[2] or r[2] ~= '0' or tonumber(r[3]) <= tonumber(ARGV[1]) then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
`)

// Claim implements Store.
func (r *Redis) Claim(ctx context.Context, key Key, fingerprint string, lease time.Duration) (Claim, error) {
	now := r.cfg.now()
	if err := checkClaim(ctx, now, lease, r.cfg.ttl); err != nil {
		return Claim{}, err
	}
	if r.closed.Load() {
		return Claim{}, ErrClosed
	}
	e := newClaimEntry(fingerprint, 0, now, lease, r.cfg.ttl)
	reply, err := claimScript.Run(ctx, r.client, []string{redisKey(key), redisTokenKey},
		now.UnixMilli(), fingerprint, e.LeaseExpires.UnixMilli(), e.ExpiresAt.UnixMilli(),
		pexpire(now, e.ExpiresAt), rand.Text()).Slice()
	if err != nil {
		return Claim{}, r.wrap(ctx, err)
	}
	if len(reply) == 2 && reply[0] == int64(1) {
		s, _ := reply[1].(string)
		token, err := strconv.ParseUint(s, 10, 64)
		if err != nil || token == 0 {
			return Claim{}, unexpectedReply(reply)
		}
		return Claim{Token: token}, nil
	}
	if len(reply) != 7 || reply[0] != int64(0) {
		return Claim{}, unexpectedReply(reply)
	}
	var f [6]string
	for i := range f {
		s, ok := reply[i+1].(string)
		if !ok {
			return Claim{}, unexpectedReply(reply)
		}
		f[i] = s
	}
	existing, err := parseRedisEntry(f[0], f[1], f[2], f[3], f[4], f[5])
	if err != nil {
		return Claim{}, unavailable(fmt.Errorf("redis: %w", err))
	}
	return Claim{Entry: existing}, nil
}

// Complete implements Store.
func (r *Redis) Complete(ctx context.Context, key Key, token uint64, resp Response) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.closed.Load() {
		return ErrClosed
	}
	now := r.cfg.now()
	expiresAt := now.Add(r.cfg.ttl)
	ok, err := completeScript.Run(ctx, r.client, []string{redisKey(key)},
		now.UnixMilli(), strconv.FormatUint(token, 10), appendResponse(nil, &resp),
		expiresAt.UnixMilli(), pexpire(now, expiresAt)).Int()
	if err != nil {
		return r.wrap(ctx, err)
	}
	if ok != 1 {
		return ErrFenced
	}
	return nil
}

// Release implements Store.
func (r *Redis) Release(ctx context.Context, key Key, token uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.closed.Load() {
		return ErrClosed
	}
	ok, err := releaseScript.Run(ctx, r.client, []string{redisKey(key)},
		r.cfg.now().UnixMilli(), strconv.FormatUint(token, 10)).Int()
	if err != nil {
		return r.wrap(ctx, err)
	}
	if ok != 1 {
		return ErrFenced
	}
	return nil
}

// Get implements Store.
func (r *Redis) Get(ctx context.Context, key Key) (*Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if r.closed.Load() {
		return nil, ErrClosed
	}
	vals, err := r.client.HMGet(ctx, redisKey(key), "fp", "tok", "done", "lease", "exp", "resp").Result()
	if err != nil {
		return nil, r.wrap(ctx, err)
	}
	var f [6]string
	for i, v := range vals {
		if i < len(f) {
			f[i], _ = v.(string) // a missing field is nil, read as ""
		}
	}
	if f[1] == "" {
		return nil, ErrNotFound
	}
	e, err := parseRedisEntry(f[0], f[1], f[2], f[3], f[4], f[5])
	if err != nil {
		return nil, unavailable(fmt.Errorf("redis: %w", err))
	}
	if !live(e.ExpiresAt, r.cfg.now()) {
		return nil, ErrNotFound
	}
	return e, nil
}

// CheckConfig checks that the Redis server is configured as the store needs, and otherwise returns
// an error that says what to change: maxmemory-policy must be noeviction (see the Redis type). When
// the server does not let fetchd read its configuration (CONFIG renamed or disabled, or denied by an
// ACL, as on many managed Redis services), CheckConfig cannot tell and returns nil. A Redis that
// cannot be reached is ErrUnavailable. Open and NewRedis do not contact Redis; call CheckConfig at
// startup.
func (r *Redis) CheckConfig(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.closed.Load() {
		return ErrClosed
	}
	cfg, err := r.client.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil {
		if configHidden(err) {
			return nil
		}
		return r.wrap(ctx, err)
	}
	if policy, ok := cfg["maxmemory-policy"]; ok && policy != "noeviction" {
		return fmt.Errorf("idempotency: redis maxmemory-policy is %q, want noeviction: under an "+
			"evicting policy a full Redis deletes in-flight claims and stored responses, and duplicate "+
			"requests are sent again (CONFIG SET maxmemory-policy noeviction, and set it in redis.conf)", policy)
	}
	return nil
}

// configHidden reports whether err is Redis refusing CONFIG GET itself: the command is unknown
// (renamed or disabled) or the user may not run it.
func configHidden(err error) bool {
	return redis.HasErrorPrefix(err, "unknown command") || redis.HasErrorPrefix(err, "unknown subcommand") ||
		redis.HasErrorPrefix(err, "NOPERM")
}

// Close closes the Redis client if Open created it; a client passed to NewRedis is left open.
func (r *Redis) Close() error {
	r.once.Do(func() {
		r.closed.Store(true)
		if r.owned {
			r.err = r.client.Close()
		}
	})
	return r.err
}

// wrap maps a Redis error to the store's errors: a closed client is ErrClosed, a call cut short by
// ctx ending is ctx's error, and anything else is ErrUnavailable wrapping the cause (redis.Nil never
// reaches here: the scripts always reply and HMGET replies with nils).
func (r *Redis) wrap(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, redis.ErrClosed) && r.closed.Load():
		return ErrClosed
	case ctx.Err() != nil:
		return fmt.Errorf("idempotency: redis: %w", ctx.Err())
	}
	return unavailable(fmt.Errorf("redis: %w", err))
}

func unexpectedReply(reply []any) error {
	return unavailable(fmt.Errorf("redis: unexpected script reply with %d elements", len(reply)))
}

// pexpire is the relative expiry, in milliseconds, of a key that logically expires at expiresAt.
func pexpire(now, expiresAt time.Time) int64 {
	return (expiresAt.Sub(now) + redisExpiryMargin).Milliseconds()
}

// parseRedisEntry builds an Entry from a record hash's fields.
func parseRedisEntry(fp, tok, done, lease, exp, resp string) (*Entry, error) {
	token, err := strconv.ParseUint(tok, 10, 64)
	if err != nil {
		return nil, errCorrupt
	}
	expMs, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return nil, errCorrupt
	}
	e := &Entry{Fingerprint: fp, Token: token, ExpiresAt: time.UnixMilli(expMs)}
	switch done {
	case "1":
		e.Completed = true
		if e.Response, err = decodeResponse([]byte(resp)); err != nil {
			return nil, err
		}
	case "0":
		leaseMs, err := strconv.ParseInt(lease, 10, 64)
		if err != nil {
			return nil, errCorrupt
		}
		e.LeaseExpires = time.UnixMilli(leaseMs)
	default:
		return nil, errCorrupt
	}
	return e, nil
}
