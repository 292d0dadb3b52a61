package identity

import (
	"math"
	"strings"
	"testing"

	"github.com/fetchd/fetchd/internal/egress"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	good := func() Config {
		return Config{
			Callers: []Caller{
				{Name: "a", Tokens: [][32]byte{HashToken("ta")}, Certificates: []CertMatch{{URI: "spiffe://x/a"}},
					AllowTargets: patterns(t, "*.example.com"), Rate: Rate{PerSecond: 5, Burst: 10}},
				{Name: "b", Certificates: []CertMatch{{DNS: "b.example"}, {CommonName: "b"}}},
			},
			Anonymous:     AnonymousLoopback,
			AnonymousRate: Rate{PerSecond: 1},
		}
	}
	if err := good().Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}

	for _, tc := range []struct {
		desc   string
		change func(*Config)
		want   []string // each in the message
	}{
		{"no name", func(c *Config) { c.Callers[1].Name = "" }, []string{"caller #2", "no name"}},
		{"reserved name", func(c *Config) { c.Callers[1].Name = AnonymousName }, []string{`"anonymous"`, "reserved"}},
		{"duplicate name", func(c *Config) { c.Callers[1].Name = "a" }, []string{`caller "a"`, "more than once"}},
		{"no credentials", func(c *Config) { c.Callers[1].Certificates = nil }, []string{`caller "b"`, "never be authenticated"}},
		{"shared token", func(c *Config) { c.Callers[1].Tokens = [][32]byte{HashToken("ta")} },
			[]string{`caller "b"`, FormatTokenHash(HashToken("ta")), `caller "a"`}},
		{"shared certificate", func(c *Config) { c.Callers[1].Certificates = []CertMatch{{URI: "spiffe://x/a"}} },
			[]string{`caller "b"`, "spiffe://x/a", `caller "a"`}},
		{"shared DNS name in another case", func(c *Config) {
			c.Callers[0].Certificates = append(c.Callers[0].Certificates, CertMatch{DNS: "B.Example"})
		}, []string{`caller "b"`, `DNS "b.example"`, `caller "a"`}},
		{"empty certificate match", func(c *Config) { c.Callers[1].Certificates = []CertMatch{{}} }, []string{"exactly one", "not 0"}},
		{"two fields in a match", func(c *Config) { c.Callers[1].Certificates = []CertMatch{{DNS: "b.example", CommonName: "b"}} },
			[]string{"exactly one", "not 2"}},
		{"zero pattern", func(c *Config) { c.Callers[0].AllowTargets = []egress.HostPattern{{}} }, []string{`caller "a"`, "target #1"}},
		{"NaN rate", func(c *Config) { c.Callers[0].Rate.PerSecond = math.NaN() }, []string{`caller "a"`, "not a number"}},
		{"negative burst", func(c *Config) { c.AnonymousRate.Burst = -1 }, []string{"anonymous", "-1"}},
		{"bad anonymous mode", func(c *Config) { c.Anonymous = 7 }, []string{"anonymous setting 7"}},
		{"zero anonymous pattern", func(c *Config) { c.AnonymousAllowTargets = []egress.HostPattern{{}} }, []string{"anonymous calls", "target #1"}},
	} {
		cfg := good()
		tc.change(&cfg)
		err := cfg.Validate()
		if err == nil {
			t.Errorf("%s: Validate accepted it", tc.desc)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not mention %q", tc.desc, err, w)
			}
		}
	}
}

// TestValidateReportsEveryProblem: one call lists all problems, not the
// first.
func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	cfg := Config{Callers: []Caller{{Name: ""}, {Name: AnonymousName, Tokens: [][32]byte{HashToken("x")}}}, Anonymous: 9}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate accepted it")
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != 4 {
		t.Fatalf("Validate reported %d problems; want 4:\n%v", n, err)
	}
}
