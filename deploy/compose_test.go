package deploy

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"

	"github.com/fetchd/fetchd/internal/identity"
	"github.com/fetchd/fetchd/internal/policy"
)

// The stack's fixed points. The checks below hold every file to them, so a
// port or a name changed in one file and not in the others is caught.
const (
	collectorService = "otel-collector"
	jaegerService    = "jaeger"
	redisService     = "redis"
	otlpGRPCPort     = "4317" // the collector's OTLP/gRPC receiver, and Jaeger's
	otlpHTTPPort     = "4318"
	grpcPort         = "7070" // fetchd's gRPC port inside its container
	adminPort        = "7071" // fetchd's admin HTTP port (/metrics) inside its container
	scrapeEvery      = 5 * time.Second
)

// instance is one fetchd service and the host ports it publishes.
type instance struct {
	service             string
	hostGRPC, hostAdmin string
}

func instances() []instance {
	return []instance{
		{service: "fetchd-1", hostGRPC: "7070", hostAdmin: "7071"},
		{service: "fetchd-2", hostGRPC: "7080", hostAdmin: "7081"},
	}
}

func wantServices() []string {
	return []string{"fetchd-1", "fetchd-2", jaegerService, collectorService, "prometheus", redisService}
}

// stack is what the compose checks read: the loaded project, the repository
// root it was loaded from and the flag names cmd/fetchd accepts.
type stack struct {
	root    string
	project *types.Project
	flags   map[string]bool
}

// problems collects what a check found wrong, one sentence each.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// loadCompose loads a compose file the way `docker compose` does
// (interpolation, schema validation, consistency checks, paths resolved
// against root), with an empty environment so that no variable of the
// caller's shell changes what is checked.
func loadCompose(ctx context.Context, root, file string) (*types.Project, error) {
	opts, err := cli.NewProjectOptions([]string{file},
		cli.WithWorkingDirectory(root),
		cli.WithEnv(nil),
		cli.WithInterpolation(true),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		return nil, err
	}
	return opts.LoadProject(ctx)
}

// loadStack loads ../docker-compose.yaml, or compose instead when it is not
// nil (written to a temporary file; relative paths still resolve against the
// repository root).
func loadStack(t *testing.T, compose []byte) *stack {
	t.Helper()
	root := repoRoot(t)
	file := filepath.Join(root, "docker-compose.yaml")
	if compose != nil {
		file = filepath.Join(t.TempDir(), "docker-compose.yaml")
		if err := os.WriteFile(file, compose, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p, err := loadCompose(t.Context(), root, file)
	if err != nil {
		t.Fatalf("loading %s: %v", file, err)
	}
	return &stack{root: root, project: p, flags: fetchdFlags(t, root)}
}

// flagName matches the flag definitions in cmd/fetchd/flags.go:
// fs.StringVar(&m.Listen, "listen", ...), fs.Var((*cidrList)(&m.AllowCIDRs), "allow-cidr", ...).
var flagName = regexp.MustCompile(`fs\.[A-Za-z]+\([^,]+,\s*"([a-z][a-z0-9-]*)"`)

// fetchdFlags returns the names of the flags cmd/fetchd defines.
func fetchdFlags(t *testing.T, root string) map[string]bool {
	t.Helper()
	src := readFile(t, filepath.Join(root, "cmd", "fetchd", "flags.go"))
	flags := map[string]bool{}
	for _, m := range flagName.FindAllSubmatch(src, -1) {
		flags[string(m[1])] = true
	}
	if len(flags) == 0 {
		t.Fatal("found no flag definitions in cmd/fetchd/flags.go; update flagName to the way flags are defined there")
	}
	return flags
}

// parseArgs reads a command line of --name value and --name=value pairs
// (every fetchd flag takes a value) into a map, in the order given.
func parseArgs(args []string) (names []string, values map[string]string) {
	values = map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !hasValue && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			i++
			value = args[i]
		}
		names = append(names, name)
		values[name] = value
	}
	return names, values
}

func env(svc types.ServiceConfig, key string) string {
	if v := svc.Environment[key]; v != nil {
		return *v
	}
	return ""
}

// publishes reports whether svc publishes container port target on host port published.
func publishes(svc types.ServiceConfig, published, target string) bool {
	return slices.ContainsFunc(svc.Ports, func(p types.ServicePortConfig) bool {
		return p.Published == published && fmt.Sprint(p.Target) == target
	})
}

// bindMount returns the read-only bind mount of svc at target.
func bindMount(svc types.ServiceConfig, target string) (types.ServiceVolumeConfig, bool) {
	for _, v := range svc.Volumes {
		if v.Type == types.VolumeTypeBind && v.Target == target {
			return v, true
		}
	}
	return types.ServiceVolumeConfig{}, false
}

// reachable reports whether a listen address accepts connections from other
// containers: every interface, not loopback.
func reachable(addr string) (port string, ok bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", false
	}
	switch host {
	case "", "0.0.0.0", "::":
		return port, true
	}
	return port, false
}

// checkCompose checks the compose project's wiring.
func checkCompose(s *stack) problems {
	var r problems
	p := s.project
	if got := slices.Sorted(maps.Keys(p.Services)); !slices.Equal(got, slices.Sorted(slices.Values(wantServices()))) {
		r.add("services are %v, want %v", got, slices.Sorted(slices.Values(wantServices())))
	}
	checkHostPorts(&r, p)
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		svc := p.Services[name]
		for _, v := range svc.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				r.add("%s mounts %s, which does not exist", name, v.Source)
			}
		}
		if svc.Build == nil {
			if _, tag, _ := strings.Cut(lastPathElem(svc.Image), ":"); tag == "" || tag == "latest" {
				r.add("%s: image %q is not pinned to a version tag", name, svc.Image)
			}
		}
	}

	if redis, ok := p.Services[redisService]; ok {
		hc := redis.HealthCheck
		if hc == nil || hc.Disable || !slices.Contains(hc.Test, "redis-cli") || !slices.Contains(hc.Test, "ping") {
			r.add("%s: no `redis-cli ping` healthcheck; the fetchd services wait for service_healthy", redisService)
		}
		// An evicted claim would let a duplicate keyed call through.
		if _, args := parseArgs(redis.Command); args["maxmemory-policy"] != "noeviction" {
			r.add("%s: command %v does not set --maxmemory-policy noeviction", redisService, redis.Command)
		}
	}

	images := map[string]bool{}
	ids := map[string]string{}
	for _, in := range instances() {
		svc, ok := p.Services[in.service]
		if !ok {
			continue
		}
		images[svc.Image] = true
		id := checkFetchd(&r, s, svc, in)
		if other, dup := ids[id]; dup && id != "" {
			r.add("%s and %s have the same service.instance.id %q; their spans cannot be told apart", other, in.service, id)
		}
		ids[id] = in.service
	}
	if len(images) > 1 {
		r.add("the fetchd services run different images %v; they must run the same build", slices.Sorted(maps.Keys(images)))
	}

	checkConfigMount(&r, s, collectorService, "config", "otel-collector.yaml")
	checkConfigMount(&r, s, "prometheus", "config.file", "prometheus.yml")
	if j, ok := p.Services[jaegerService]; ok && !publishes(j, "16686", "16686") {
		r.add("%s does not publish its UI as 16686:16686", jaegerService)
	}
	if pr, ok := p.Services["prometheus"]; ok && !publishes(pr, "9090", "9090") {
		r.add("prometheus does not publish its UI as 9090:9090")
	}
	return r
}

func lastPathElem(image string) string { return image[strings.LastIndex(image, "/")+1:] }

// checkHostPorts reports a host port published by two services (or twice).
func checkHostPorts(r *problems, p *types.Project) {
	owner := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		for _, port := range p.Services[name].Ports {
			if port.Published == "" {
				continue
			}
			proto := cmpOr(port.Protocol, "tcp")
			key := port.Published + "/" + proto
			if prev, taken := owner[key]; taken {
				r.add("host port %s is published by both %s and %s", key, prev, name)
				continue
			}
			owner[key] = name
		}
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// checkFetchd checks one fetchd service and returns its service.instance.id.
func checkFetchd(r *problems, s *stack, svc types.ServiceConfig, in instance) string {
	name := in.service
	wantDockerfile := filepath.Join(s.root, "Dockerfile")
	if b := svc.Build; b == nil {
		r.add("%s has no build section; it must build %s", name, wantDockerfile)
	} else {
		df := cmpOr(b.Dockerfile, "Dockerfile")
		if !filepath.IsAbs(df) {
			df = filepath.Join(b.Context, df)
		}
		if b.Context != s.root || df != wantDockerfile {
			r.add("%s builds %s in context %s; want the repository root's Dockerfile (%s)", name, df, b.Context, wantDockerfile)
		}
	}

	names, args := parseArgs(svc.Command)
	for _, f := range names {
		if !s.flags[f] {
			r.add("%s: --%s is not a flag of cmd/fetchd (see cmd/fetchd/flags.go)", name, f)
		}
	}
	if u, err := url.Parse(args["store"]); err != nil || u.Scheme != "redis" || u.Hostname() != redisService || u.Port() != "6379" {
		r.add("%s: --store %q is not redis://%s:6379/DB, the %s service", name, args["store"], redisService, redisService)
	}
	for _, l := range []struct{ flag, port, host string }{{"listen", grpcPort, in.hostGRPC}, {"admin", adminPort, in.hostAdmin}} {
		port, ok := reachable(args[l.flag])
		if !ok || port != l.port {
			r.add("%s: --%s %q; want 0.0.0.0:%s (loopback is unreachable from other containers and published ports)", name, l.flag, args[l.flag], l.port)
		}
		if !publishes(svc, l.host, l.port) {
			r.add("%s does not publish %s:%s (--%s)", name, l.host, l.port, l.flag)
		}
	}
	if m, ok := bindMount(svc, args["config"]); !ok || !m.ReadOnly || m.Source != filepath.Join(s.root, "deploy", "policy.yaml") {
		r.add("%s: --config %q is not deploy/policy.yaml mounted read-only", name, args["config"])
	}

	if d, ok := svc.DependsOn[redisService]; !ok || d.Condition != types.ServiceConditionHealthy {
		r.add("%s does not depend on %s with condition service_healthy", name, redisService)
	}
	if _, ok := svc.DependsOn[collectorService]; !ok {
		r.add("%s does not depend on %s", name, collectorService)
	}

	if v := env(svc, "OTEL_SERVICE_NAME"); v != "fetchd" {
		r.add("%s: OTEL_SERVICE_NAME is %q, want fetchd", name, v)
	}
	endpoint := env(svc, "OTEL_EXPORTER_OTLP_ENDPOINT")
	if u, err := url.Parse(endpoint); err != nil || u.Scheme != "http" || u.Hostname() != collectorService || u.Port() != otlpGRPCPort {
		r.add("%s: OTEL_EXPORTER_OTLP_ENDPOINT is %q, want http://%s:%s", name, endpoint, collectorService, otlpGRPCPort)
	}
	if v := env(svc, "OTEL_EXPORTER_OTLP_PROTOCOL"); v != "grpc" {
		r.add("%s: OTEL_EXPORTER_OTLP_PROTOCOL is %q, want grpc (the endpoint is the gRPC port)", name, v)
	}
	id := ""
	for _, kv := range strings.Split(env(svc, "OTEL_RESOURCE_ATTRIBUTES"), ",") {
		if k, v, _ := strings.Cut(kv, "="); strings.TrimSpace(k) == "service.instance.id" {
			id = strings.TrimSpace(v)
		}
	}
	if id == "" {
		r.add("%s: OTEL_RESOURCE_ATTRIBUTES sets no service.instance.id", name)
	}
	return id
}

// checkConfigMount checks that service reads deploy/file, mounted read-only
// at the path its --flag names.
func checkConfigMount(r *problems, s *stack, service, flag, file string) {
	svc, ok := s.project.Services[service]
	if !ok {
		return
	}
	_, args := parseArgs(svc.Command)
	m, ok := bindMount(svc, args[flag])
	if !ok || !m.ReadOnly || m.Source != filepath.Join(s.root, "deploy", file) {
		r.add("%s: --%s %q is not deploy/%s mounted read-only", service, flag, args[flag], file)
	}
}

// collectorConfig is the part of an OpenTelemetry Collector configuration
// the stack relies on.
type collectorConfig struct {
	Receivers map[string]struct {
		Protocols map[string]struct {
			Endpoint string `yaml:"endpoint"`
		} `yaml:"protocols"`
	} `yaml:"receivers"`
	Processors map[string]any `yaml:"processors"`
	Exporters  map[string]struct {
		Endpoint string `yaml:"endpoint"`
		TLS      struct {
			Insecure bool `yaml:"insecure"`
		} `yaml:"tls"`
	} `yaml:"exporters"`
	Service struct {
		Pipelines map[string]struct {
			Receivers  []string `yaml:"receivers"`
			Processors []string `yaml:"processors"`
			Exporters  []string `yaml:"exporters"`
		} `yaml:"pipelines"`
	} `yaml:"service"`
}

// componentType is the type part of a component ID ("otlp_grpc/jaeger" -> "otlp_grpc").
func componentType(id string) string { t, _, _ := strings.Cut(id, "/"); return t }

// checkCollector checks the collector configuration: OTLP in on the ports
// the fetchd services send to, reachable from other containers, and a
// traces pipeline out to the Jaeger service.
func checkCollector(data []byte, p *types.Project) problems {
	var r problems
	var c collectorConfig
	if err := yaml.Unmarshal(data, &c); err != nil {
		r.add("otel-collector.yaml: %v", err)
		return r
	}
	otlp, ok := c.Receivers["otlp"]
	if !ok {
		r.add("otel-collector.yaml: no otlp receiver")
	}
	for _, want := range []struct{ proto, port string }{{"grpc", otlpGRPCPort}, {"http", otlpHTTPPort}} {
		ep := otlp.Protocols[want.proto].Endpoint
		if got, ok := reachable(ep); !ok || got != want.port {
			r.add("otel-collector.yaml: otlp %s endpoint %q; want 0.0.0.0:%s so that other containers reach it", want.proto, ep, want.port)
		}
	}

	traces, ok := c.Service.Pipelines["traces"]
	if !ok {
		r.add("otel-collector.yaml: no traces pipeline")
	}
	if !slices.Contains(traces.Receivers, "otlp") {
		r.add("otel-collector.yaml: the traces pipeline does not receive from otlp")
	}
	for _, kind := range []struct {
		name    string
		used    []string
		defined func(string) bool
	}{
		{"receiver", traces.Receivers, func(id string) bool { _, ok := c.Receivers[id]; return ok }},
		{"processor", traces.Processors, func(id string) bool { _, ok := c.Processors[id]; return ok }},
		{"exporter", traces.Exporters, func(id string) bool { _, ok := c.Exporters[id]; return ok }},
	} {
		for _, id := range kind.used {
			if !kind.defined(id) {
				r.add("otel-collector.yaml: the traces pipeline uses %s %q, which is not defined", kind.name, id)
			}
		}
	}
	if !slices.ContainsFunc(traces.Processors, func(id string) bool { return componentType(id) == "batch" }) {
		r.add("otel-collector.yaml: the traces pipeline does not batch")
	}
	toJaeger := false
	for _, id := range traces.Exporters {
		e := c.Exporters[id]
		if typ := componentType(id); typ != "otlp_grpc" && typ != "otlp" {
			continue
		}
		host, port, err := net.SplitHostPort(strings.TrimPrefix(e.Endpoint, "http://"))
		if err == nil && host == jaegerService && port == otlpGRPCPort && e.TLS.Insecure {
			toJaeger = true
		}
	}
	if !toJaeger {
		r.add("otel-collector.yaml: the traces pipeline has no OTLP/gRPC exporter to %s:%s (tls insecure)", jaegerService, otlpGRPCPort)
	}
	if _, ok := p.Services[jaegerService]; !ok {
		r.add("the collector exports to %s, which is not a service", jaegerService)
	}
	return r
}

// promConfig is the part of a Prometheus configuration the stack relies on.
type promConfig struct {
	Global struct {
		ScrapeInterval string `yaml:"scrape_interval"`
	} `yaml:"global"`
	ScrapeConfigs []struct {
		JobName        string `yaml:"job_name"`
		ScrapeInterval string `yaml:"scrape_interval"`
		MetricsPath    string `yaml:"metrics_path"`
		Scheme         string `yaml:"scheme"`
		StaticConfigs  []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

// checkPrometheus checks that Prometheus scrapes every fetchd service's
// admin port (the one its --admin flag listens on) at /metrics every 5s.
func checkPrometheus(data []byte, p *types.Project) problems {
	var r problems
	var c promConfig
	if err := yaml.Unmarshal(data, &c); err != nil {
		r.add("prometheus.yml: %v", err)
		return r
	}
	for _, in := range instances() {
		svc, ok := p.Services[in.service]
		if !ok {
			continue
		}
		_, args := parseArgs(svc.Command)
		_, port, _ := net.SplitHostPort(args["admin"])
		target := net.JoinHostPort(in.service, port)
		found := false
		for _, sc := range c.ScrapeConfigs {
			if !slices.ContainsFunc(sc.StaticConfigs, func(s struct {
				Targets []string `yaml:"targets"`
			}) bool {
				return slices.Contains(s.Targets, target)
			}) {
				continue
			}
			found = true
			if path := cmpOr(sc.MetricsPath, "/metrics"); path != "/metrics" {
				r.add("prometheus.yml: job %s scrapes %s at %s, want /metrics", sc.JobName, target, path)
			}
			if scheme := cmpOr(sc.Scheme, "http"); scheme != "http" {
				r.add("prometheus.yml: job %s scrapes %s over %s; the admin port serves http", sc.JobName, target, scheme)
			}
			every, err := time.ParseDuration(cmpOr(sc.ScrapeInterval, c.Global.ScrapeInterval))
			if err != nil || every != scrapeEvery {
				r.add("prometheus.yml: job %s scrapes %s every %q, want %s", sc.JobName, target, cmpOr(sc.ScrapeInterval, c.Global.ScrapeInterval), scrapeEvery)
			}
		}
		if !found {
			r.add("prometheus.yml: no job scrapes %s (the admin port of %s)", target, in.service)
		}
	}
	return r
}

func report(t *testing.T, r problems) {
	t.Helper()
	for _, msg := range r {
		t.Error(msg)
	}
}

// TestStack checks the files as they are: the compose project loads and
// validates, and the compose file, the collector and Prometheus
// configurations and the policy agree with each other.
func TestStack(t *testing.T) {
	t.Parallel()
	s := loadStack(t, nil)
	report(t, checkCompose(s))
	report(t, checkCollector(readFile(t, "otel-collector.yaml"), s.project))
	report(t, checkPrometheus(readFile(t, "prometheus.yml"), s.project))
}

// TestPolicy checks that the mounted policy loads as fetchd would load it,
// lets anonymous callers in (none is on loopback in the stack) and opens no
// private range to the egress guard.
func TestPolicy(t *testing.T) {
	t.Parallel()
	set, err := policy.LoadFile("policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := set.Identity().Anonymous; got != identity.AnonymousAlways {
		t.Errorf("anonymous is %v, want always: every caller of the stack comes from another container or a published port", got)
	}
	if cidrs := set.AllowCIDRs(); len(cidrs) > 0 {
		t.Errorf("egress.allow_cidrs is %v; the demo stack reaches public targets only", cidrs)
	}
}

// mutation is a one-place edit of a file and a sentence the checks must
// then report (a piece of it).
type mutation struct {
	name, old, new, want string
}

func mutate(t *testing.T, data []byte, m mutation) []byte {
	t.Helper()
	if !bytes.Contains(data, []byte(m.old)) {
		t.Fatalf("the file no longer contains %q; update this case", m.old)
	}
	return bytes.Replace(data, []byte(m.old), []byte(m.new), 1)
}

func wantProblem(t *testing.T, r problems, want string) {
	t.Helper()
	if !slices.ContainsFunc(r, func(p string) bool { return strings.Contains(p, want) }) {
		t.Errorf("no problem mentions %q; got %q", want, r)
	}
}

// TestComposeChecksCatchMistakes breaks docker-compose.yaml in one place at a
// time and expects the checks to say what broke.
func TestComposeChecksCatchMistakes(t *testing.T) {
	t.Parallel()
	compose := readFile(t, "../docker-compose.yaml")
	for _, m := range []mutation{
		{"host port collision", `"7080:7070"`, `"7070:7070"`, "host port 7070/tcp is published by both"},
		{"store not the redis service", "redis://redis:6379/0", "redis://localhost:6379/0", "--store"},
		{"redis not awaited healthy", "condition: service_healthy", "condition: service_started", "service_healthy"},
		{"same instance id", "service.instance.id=fetchd-2", "service.instance.id=fetchd-1", "same service.instance.id"},
		{"endpoint on the HTTP port", "http://otel-collector:4317", "http://otel-collector:4318", "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{"unknown flag", "- --store\n", "- --store-url\n", "--store-url is not a flag"},
		{"missing mount source", "source: ./deploy/policy.yaml", "source: ./deploy/policy.yml", "does not exist"},
		{"admin on loopback", "- 0.0.0.0:7071", "- 127.0.0.1:7071", "--admin"},
		{"unpinned image", "prom/prometheus:v3.13.1", "prom/prometheus:latest", "not pinned"},
		{"other build context", "build: .\n", "build: ./cmd\n", "builds"},
		{"redis may evict claims", "noeviction", "allkeys-lru", "noeviction"},
	} {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			s := loadStack(t, mutate(t, compose, m))
			wantProblem(t, checkCompose(s), m.want)
		})
	}
}

// TestComposeLoadValidates checks that loading is strict: the schema is
// validated and variables are interpolated from an empty environment.
func TestComposeLoadValidates(t *testing.T) {
	t.Parallel()
	compose := readFile(t, "../docker-compose.yaml")
	for _, m := range []mutation{
		{"unknown depends_on condition", "condition: service_healthy", "condition: healthy", ""},
		{"unknown service key", "restart: unless-stopped", "restarts: unless-stopped", ""},
		{"required variable unset", "image: fetchd:dev", "image: fetchd:${FETCHD_TAG:?set FETCHD_TAG}", ""},
	} {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			file := filepath.Join(t.TempDir(), "docker-compose.yaml")
			if err := os.WriteFile(file, mutate(t, compose, m), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := loadCompose(t.Context(), repoRoot(t), file); err == nil {
				t.Error("the broken file loaded without an error")
			}
		})
	}
}

// TestCollectorChecksCatchMistakes breaks otel-collector.yaml in one place at
// a time.
func TestCollectorChecksCatchMistakes(t *testing.T) {
	t.Parallel()
	s := loadStack(t, nil)
	data := readFile(t, "otel-collector.yaml")
	for _, m := range []mutation{
		{"exporter to localhost", "endpoint: jaeger:4317", "endpoint: localhost:4317", "no OTLP/gRPC exporter to jaeger:4317"},
		{"receiver on loopback", "endpoint: 0.0.0.0:4317", "endpoint: localhost:4317", "otlp grpc endpoint"},
		{"jaeger not in the pipeline", "exporters: [otlp_grpc/jaeger, debug]", "exporters: [debug]", "no OTLP/gRPC exporter"},
		{"undefined processor", "processors: [batch]", "processors: [batch/traces]", `processor "batch/traces", which is not defined`},
		{"plaintext not allowed", "insecure: true", "insecure: false", "tls insecure"},
	} {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			wantProblem(t, checkCollector(mutate(t, data, m), s.project), m.want)
		})
	}
}

// TestPrometheusChecksCatchMistakes breaks prometheus.yml in one place at a
// time.
func TestPrometheusChecksCatchMistakes(t *testing.T) {
	t.Parallel()
	s := loadStack(t, nil)
	data := readFile(t, "prometheus.yml")
	for _, m := range []mutation{
		{"gRPC port scraped", `"fetchd-2:7071"`, `"fetchd-2:7070"`, "no job scrapes fetchd-2:7071"},
		{"other path", "metrics_path: /metrics", "metrics_path: /stats", "want /metrics"},
		{"slower scrape", "    scrape_interval: 5s", "    scrape_interval: 1m", "want 5s"},
	} {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			wantProblem(t, checkPrometheus(mutate(t, data, m), s.project), m.want)
		})
	}
}
