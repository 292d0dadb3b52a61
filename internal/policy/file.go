package policy

import "time"

// The structs below mirror the policy file, key for key (see doc.go and
// examples/policy.yaml). They hold what was written and where; compile.go
// checks the values and turns them into a Set.

type fileDoc struct {
	Version     opt[int]             `yaml:"version"`
	Server      serverDoc            `yaml:"server"`
	Egress      egressDoc            `yaml:"egress"`
	Defaults    valuesDoc            `yaml:"defaults"`
	Caps        capsDoc              `yaml:"caps"`
	Protection  protectionDoc        `yaml:"protection"`
	Idempotency idempotencyDoc       `yaml:"idempotency"`
	Policies    map[string]valuesDoc `yaml:"policies"`
	Targets     []targetDoc          `yaml:"targets"`
	Callers     []callerDoc          `yaml:"callers"`
	Anonymous   anonymousDoc         `yaml:"anonymous"`
	Telemetry   telemetryDoc         `yaml:"telemetry"`
}

type telemetryDoc struct {
	RedactQueryParams opt[[]string] `yaml:"redact_query_params"`
}

type serverDoc struct {
	Listen       opt[string]        `yaml:"listen"`
	Admin        opt[string]        `yaml:"admin"`
	Store        opt[string]        `yaml:"store"`
	DrainTimeout opt[time.Duration] `yaml:"drain_timeout"`
}

type egressDoc struct {
	AllowCIDRs opt[[]string] `yaml:"allow_cidrs"`
}

type timeoutsDoc struct {
	Connect opt[time.Duration] `yaml:"connect"`
	Read    opt[time.Duration] `yaml:"read"`
	Attempt opt[time.Duration] `yaml:"attempt"`
	Total   opt[time.Duration] `yaml:"total"`
}

type retryDoc struct {
	MaxAttempts    opt[int]           `yaml:"max_attempts"`
	InitialBackoff opt[time.Duration] `yaml:"initial_backoff"`
	MaxBackoff     opt[time.Duration] `yaml:"max_backoff"`
	Multiplier     opt[float64]       `yaml:"multiplier"`
	RetryOnStatus  opt[[]int]         `yaml:"retry_on_status"`
	MaxRetryAfter  opt[time.Duration] `yaml:"max_retry_after"`
}

// valuesDoc is the shape shared by defaults, a named policy and a target
// rule: the values a request runs with.
type valuesDoc struct {
	At               pos           `yaml:"-"`
	Timeouts         timeoutsDoc   `yaml:"timeouts"`
	Retry            retryDoc      `yaml:"retry"`
	MaxRequestBytes  opt[byteSize] `yaml:"max_request_bytes"`
	MaxResponseBytes opt[byteSize] `yaml:"max_response_bytes"`
}

type capsDoc struct {
	At                pos                `yaml:"-"`
	MaxAttempts       opt[int]           `yaml:"max_attempts"`
	MaxConnectTimeout opt[time.Duration] `yaml:"max_connect_timeout"`
	MaxReadTimeout    opt[time.Duration] `yaml:"max_read_timeout"`
	MaxAttemptTimeout opt[time.Duration] `yaml:"max_attempt_timeout"`
	MaxTotalTimeout   opt[time.Duration] `yaml:"max_total_timeout"`
	MaxBackoff        opt[time.Duration] `yaml:"max_backoff"`
	MaxMultiplier     opt[float64]       `yaml:"max_multiplier"`
	MaxRetryAfter     opt[time.Duration] `yaml:"max_retry_after"`
	MaxRequestBytes   opt[byteSize]      `yaml:"max_request_bytes"`
	MaxResponseBytes  opt[byteSize]      `yaml:"max_response_bytes"`
}

type budgetDoc struct {
	Enabled             opt[bool]          `yaml:"enabled"`
	Ratio               opt[float64]       `yaml:"ratio"`
	MinRetriesPerSecond opt[float64]       `yaml:"min_retries_per_second"`
	Window              opt[time.Duration] `yaml:"window"`
}

type breakerDoc struct {
	Enabled             opt[bool]          `yaml:"enabled"`
	ConsecutiveFailures opt[int]           `yaml:"consecutive_failures"`
	FailureRatio        opt[float64]       `yaml:"failure_ratio"`
	MinRequests         opt[int]           `yaml:"min_requests"`
	Window              opt[time.Duration] `yaml:"window"`
	OpenFor             opt[time.Duration] `yaml:"open_for"`
	HalfOpenProbes      opt[int]           `yaml:"half_open_probes"`
}

type protectionDoc struct {
	RetryBudget     budgetDoc  `yaml:"retry_budget"`
	Breaker         breakerDoc `yaml:"breaker"`
	ShareRetryAfter opt[bool]  `yaml:"share_retry_after"`
}

type idempotencyDoc struct {
	TTL          opt[time.Duration] `yaml:"ttl"`
	InFlightWait opt[time.Duration] `yaml:"in_flight_wait"`
}

type targetDoc struct {
	valuesDoc         `yaml:",inline"`
	Host              opt[string]   `yaml:"host"`
	MaxConns          opt[int]      `yaml:"max_conns"`
	IdempotencyHeader opt[string]   `yaml:"idempotency_header"`
	FollowRedirects   opt[bool]     `yaml:"follow_redirects"`
	MaxRedirects      opt[int]      `yaml:"max_redirects"`
	Caps              capsDoc       `yaml:"caps"`
	Protection        protectionDoc `yaml:"protection"`
}

type rateDoc struct {
	At        pos          `yaml:"-"`
	PerSecond opt[float64] `yaml:"per_second"`
	Burst     opt[int]     `yaml:"burst"`
}

type certDoc struct {
	At         pos         `yaml:"-"`
	URI        opt[string] `yaml:"uri"`
	DNS        opt[string] `yaml:"dns"`
	CommonName opt[string] `yaml:"common_name"`
}

type callerDoc struct {
	At           pos           `yaml:"-"`
	Name         opt[string]   `yaml:"name"`
	Tokens       opt[secrets]  `yaml:"tokens"`
	Certificates []certDoc     `yaml:"certificates"`
	AllowTargets opt[[]string] `yaml:"allow_targets"`
	RateLimit    rateDoc       `yaml:"rate_limit"`
}

type anonymousDoc struct {
	Allow        opt[string]   `yaml:"allow"`
	AllowTargets opt[[]string] `yaml:"allow_targets"`
	RateLimit    rateDoc       `yaml:"rate_limit"`
}
