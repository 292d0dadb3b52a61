package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, COPY, ...
	args string
}

// stage is one FROM and the instructions after it.
type stage struct {
	image, name string
	ins         []instruction
}

// parseDockerfile splits a Dockerfile into stages. It is a line-wise reader
// for the simple checks below, not a full parser: comments, blank lines and
// backslash continuations are handled; heredocs are not.
func parseDockerfile(data []byte) []stage {
	var stages []stage
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			var st stage
			var fields []string
			for _, f := range strings.Fields(in.args) {
				if !strings.HasPrefix(f, "--") { // --platform=...
					fields = append(fields, f)
				}
			}
			if len(fields) > 0 {
				st.image = fields[0]
			}
			if len(fields) >= 3 && strings.EqualFold(fields[1], "AS") {
				st.name = fields[2]
			}
			stages = append(stages, st)
			return
		}
		if len(stages) > 0 {
			stages[len(stages)-1].ins = append(stages[len(stages)-1].ins, in)
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") {
			continue
		}
		if rest, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(rest + " ")
			continue
		}
		cur.WriteString(line)
		flush()
	}
	flush()
	return stages
}

// last returns the args of the stage's last instruction cmd.
func (s stage) last(cmd string) (string, bool) {
	for _, in := range slices.Backward(s.ins) {
		if in.cmd == cmd {
			return in.args, true
		}
	}
	return "", false
}

// index returns the position of the first instruction cmd whose args satisfy
// match, or -1.
func (s stage) index(cmd string, match func(args string) bool) int {
	return slices.IndexFunc(s.ins, func(in instruction) bool { return in.cmd == cmd && match(in.args) })
}

var goDirective = regexp.MustCompile(`(?m)^go (\d+\.\d+)(\.\d+)?\s*$`)

// goMinor returns "1.26" for "1.26", "1.26.0" and "1.26-bookworm".
func goMinor(v string) string {
	v, _, _ = strings.Cut(v, "-")
	parts := strings.Split(v, ".")
	if len(parts) < 2 {
		return v
	}
	return parts[0] + "." + parts[1]
}

// checkDockerfile checks the image recipe: a Go build stage on go.mod's Go
// minor with CGO off and the module download in its own layer, and a final
// distroless static stage that runs /fetchd as a non-root user.
func checkDockerfile(data, goMod []byte, flags map[string]bool) problems {
	var r problems
	stages := parseDockerfile(data)
	if len(stages) < 2 {
		r.add("Dockerfile: %d stage(s); want a build stage and a runtime stage", len(stages))
		return r
	}
	final := stages[len(stages)-1]
	if !strings.HasPrefix(final.image, "gcr.io/distroless/static") {
		r.add("Dockerfile: the final stage is FROM %s, want a distroless static image (gcr.io/distroless/static...)", final.image)
	}
	if user, ok := final.last("USER"); !ok {
		r.add("Dockerfile: the final stage sets no USER")
	} else if name, _, _ := strings.Cut(user, ":"); name == "" || name == "root" || name == "0" {
		r.add("Dockerfile: the final stage runs as USER %s, want a non-root user", user)
	}
	var entry []string
	if args, ok := final.last("ENTRYPOINT"); !ok || json.Unmarshal([]byte(args), &entry) != nil || !slices.Equal(entry, []string{"/fetchd"}) {
		r.add(`Dockerfile: the final stage's ENTRYPOINT is %q, want ["/fetchd"] (exec form)`, args)
	}
	if args, ok := final.last("EXPOSE"); !ok || !slices.Contains(strings.Fields(args), grpcPort) || !slices.Contains(strings.Fields(args), adminPort) {
		r.add("Dockerfile: EXPOSE %q, want %s and %s", args, grpcPort, adminPort)
	}
	var cmd []string
	if args, ok := final.last("CMD"); ok {
		if err := json.Unmarshal([]byte(args), &cmd); err != nil {
			r.add("Dockerfile: CMD %s is not in exec form", args)
		}
	}
	names, _ := parseArgs(cmd)
	for _, f := range names {
		if !flags[f] {
			r.add("Dockerfile: CMD passes --%s, which is not a flag of cmd/fetchd", f)
		}
	}

	// The binary comes from a build stage: COPY --from=<stage> <src> /fetchd.
	var build *stage
	var binary string
	for _, in := range final.ins {
		f := strings.Fields(in.args)
		if in.cmd != "COPY" || len(f) != 3 || f[2] != "/fetchd" {
			continue
		}
		from, ok := strings.CutPrefix(f[0], "--from=")
		if !ok {
			continue
		}
		for i := range stages[:len(stages)-1] {
			if stages[i].name == from || strconv.Itoa(i) == from {
				build, binary = &stages[i], f[1]
			}
		}
	}
	if build == nil {
		r.add("Dockerfile: the final stage does not COPY --from=<build stage> the binary to /fetchd")
		return r
	}
	m := goDirective.FindSubmatch(goMod)
	image, tag, _ := strings.Cut(build.image, ":")
	if m == nil || image != "golang" || goMinor(tag) != string(m[1]) {
		r.add("Dockerfile: the build stage is FROM %s; want golang:<the go.mod Go minor>", build.image)
	}
	goBuild := build.index("RUN", func(a string) bool { return strings.Contains(a, "go build") })
	if goBuild < 0 {
		r.add("Dockerfile: the build stage has no RUN go build")
		return r
	}
	run := build.ins[goBuild].args
	if !strings.Contains(run, "CGO_ENABLED=0") {
		r.add("Dockerfile: go build runs without CGO_ENABLED=0; distroless static has no libc")
	}
	if !strings.Contains(run, "./cmd/fetchd") || !strings.Contains(run, "-o "+binary) {
		r.add("Dockerfile: %q does not build ./cmd/fetchd to %s", run, binary)
	}
	// Modules are downloaded before the sources are copied, as their own layer.
	copyMod := build.index("COPY", func(a string) bool { return strings.Contains(a, "go.mod") && strings.Contains(a, "go.sum") })
	download := build.index("RUN", func(a string) bool { return strings.Contains(a, "go mod download") })
	copyAll := build.index("COPY", func(a string) bool { return strings.HasPrefix(a, ". ") })
	if copyMod < 0 || download < 0 || copyAll < 0 || !(copyMod < download && download < copyAll && copyAll < goBuild) {
		r.add("Dockerfile: the build stage does not COPY go.mod go.sum, RUN go mod download, COPY . . and go build in that order")
	}
	return r
}

// checkDockerignore reports an ignore pattern that would keep a file the
// build needs out of the context.
func checkDockerignore(data []byte) problems {
	var r problems
	for _, line := range strings.Split(string(data), "\n") {
		pat := strings.TrimSpace(line)
		if pat == "" || strings.HasPrefix(pat, "#") || strings.HasPrefix(pat, "!") {
			continue
		}
		pat = strings.TrimPrefix(filepath.Clean(pat), "/")
		for _, need := range []string{"go.mod", "go.sum", "cmd", "internal", "gen"} {
			if ok, _ := filepath.Match(pat, need); ok {
				r.add(".dockerignore: %q leaves %s out of the build context", line, need)
			}
		}
	}
	return r
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	report(t, checkDockerfile(readFile(t, "../Dockerfile"), readFile(t, "../go.mod"), fetchdFlags(t, root)))
	report(t, checkDockerignore(readFile(t, "../.dockerignore")))
}

// TestDockerfileChecksCatchMistakes breaks the Dockerfile in one place at a
// time and expects the checks to say what broke.
func TestDockerfileChecksCatchMistakes(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	data, goMod, flags := readFile(t, "../Dockerfile"), readFile(t, "../go.mod"), fetchdFlags(t, root)
	for _, m := range []mutation{
		{"root user", "USER nonroot:nonroot", "USER root", "non-root"},
		{"cgo on", "CGO_ENABLED=0 ", "", "CGO_ENABLED=0"},
		{"not distroless", "FROM gcr.io/distroless/static-debian12:nonroot", "FROM debian:12-slim", "distroless"},
		{"shell-form entrypoint", `ENTRYPOINT ["/fetchd"]`, "ENTRYPOINT /fetchd", "ENTRYPOINT"},
		{"other Go minor", "FROM golang:1.26-bookworm", "FROM golang:1.25-bookworm", "go.mod Go minor"},
		{"unknown CMD flag", `"--listen"`, `"--listen-addr"`, "--listen-addr"},
		{"no module layer", "RUN go mod download\n", "", "go mod download"},
		{"no binary copied", "COPY --from=build /out/fetchd /fetchd", "COPY --from=build /out/fetchd /usr/bin/fetchd", "COPY --from"},
	} {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			wantProblem(t, checkDockerfile(mutate(t, data, m), goMod, flags), m.want)
		})
	}
	wantProblem(t, checkDockerignore([]byte("*.db\ninternal\n")), "leaves internal out")
}
