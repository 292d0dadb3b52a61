package examples

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// readmePath is the README whose grpcurl examples TestReadmeGrpcurl runs.
const readmePath = "../README.md"

// The README's examples call fetchd and the demo upstream at these
// addresses; the test rewrites them to where its own processes listen.
const (
	readmeFetchdAddr   = "127.0.0.1:7070"
	readmeUpstreamAddr = "127.0.0.1:8080"
)

// The README's commands that start fetchd and the demo upstream. The test
// runs them with the README's flags, plus its own addresses and store.
const (
	readmeFetchdCmd   = "go run ./cmd/fetchd"
	readmeUpstreamCmd = "go run ./examples/upstream"
)

// variesKeys are the JSON keys whose values differ from one run to the next;
// the comparison checks that such a key is there, not its value.
var variesKeys = []string{"duration", "backoff", "traceId"}

// variesHeaders are the response headers ({"name", "value"} objects) whose
// values differ from one run to the next, checked the same way.
var variesHeaders = []string{"Date"}

// TestReadmeGrpcurl runs every grpcurl example of the README, in order,
// against the real fetchd binary and the demo upstream in examples/upstream,
// each started with the flags the README starts it with, and compares what
// grpcurl prints with the README's output block below the command.
func TestReadmeGrpcurl(t *testing.T) {
	t.Parallel()
	grpcurl := findGrpcurl(t)

	doc := readReadme(t)
	if len(doc.examples) == 0 {
		t.Fatal("README has no grpcurl examples")
	}

	dir := t.TempDir()
	fetchdBin, upstreamBin := filepath.Join(dir, "fetchd"), filepath.Join(dir, "upstream")
	var wg sync.WaitGroup
	var fetchdErr, upstreamErr error
	wg.Go(func() { fetchdErr = goBuild(t.Context(), fetchdBin) })
	wg.Go(func() { upstreamErr = goBuildUpstream(t.Context(), upstreamBin) })
	wg.Wait()
	if err := errors.Join(fetchdErr, upstreamErr); err != nil {
		t.Fatal(err)
	}

	// Flags given later win, so the test's addresses and the in-memory store
	// (every run starts with no idempotency records) override the README's.
	upstreamAddr := startUpstream(t, upstreamBin, append(doc.upstreamArgs, "-listen", "127.0.0.1:0")...)
	fd := startFetchd(t, fetchdBin, append(doc.fetchdArgs,
		"--listen", "127.0.0.1:0", "--admin", "", "--store", "memory:", "--reload-interval", "0")...)
	ports := strings.NewReplacer(readmeFetchdAddr, fd.addr, readmeUpstreamAddr, upstreamAddr)

	// In order and one at a time: an example may depend on the ones before
	// it (a replay needs the first call).
	for _, ex := range doc.examples {
		t.Run(fmt.Sprintf("README line %d", ex.line), func(t *testing.T) {
			out, exit := runShell(t, filepath.Dir(grpcurl), ports.Replace(ex.command))
			if want := ex.lang == "json"; (exit == 0) != want {
				t.Errorf("grpcurl exit status %d; the README shows %s output", exit, ex.lang)
			}
			if err := compareOutput(ex.lang, ports.Replace(ex.output), out); err != nil {
				t.Errorf("README line %d:\n%s\n\n%v\n\ngrpcurl printed:\n%s", ex.line, ex.command, err, out)
			}
		})
	}
}

// TestReadmeComparison shows that the comparison TestReadmeGrpcurl makes
// catches an edited output block: every value it compares, changed in a copy
// of the README's own blocks, is a mismatch, and only the values that vary
// from run to run are let through.
func TestReadmeComparison(t *testing.T) {
	t.Parallel()
	doc := readReadme(t)
	var jsonSeen, textSeen bool
	for _, ex := range doc.examples {
		if err := compareOutput(ex.lang, ex.output, ex.output); err != nil {
			t.Errorf("README line %d: the output block does not match itself: %v", ex.line, err)
		}
		switch ex.lang {
		case "json":
			jsonSeen = true
			checkJSONMutations(t, ex)
		case "text":
			textSeen = true
			checkTextMutations(t, ex)
		}
	}
	if !jsonSeen || !textSeen {
		t.Errorf("README examples: a json block %v, a text block %v; want both kinds", jsonSeen, textSeen)
	}

	// A number edited in the text of a copy, as a README edit would do it.
	if len(doc.examples) == 0 {
		t.Fatal("README has no grpcurl examples")
	}
	first := doc.examples[0]
	edited := strings.Replace(first.output, `"status": 201`, `"status": 200`, 1)
	if edited == first.output {
		t.Fatalf("README line %d: no \"status\": 201 in the first example's output to edit:\n%s", first.line, first.output)
	}
	err := compareOutput("json", edited, first.output)
	if err == nil || !strings.Contains(err.Error(), "status: README shows 200, grpcurl printed 201") {
		t.Errorf("status 201 edited to 200: comparison says %v, want a status mismatch", err)
	}
}

// checkJSONMutations changes each leaf of ex's output in turn and compares
// the copy with the original: a mismatch unless the leaf is one that varies.
func checkJSONMutations(t *testing.T, ex readmeExample) {
	t.Helper()
	var compared, ignored int
	for _, leaf := range jsonLeaves(t, ex.output) {
		tree := decodeJSON(t, ex.output)
		setLeaf(tree, leaf.path, mutate(leaf.value))
		b, err := json.MarshalIndent(tree, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		err = compareOutput("json", string(b), ex.output)
		switch {
		case leaf.varies && err != nil:
			t.Errorf("README line %d: %s changed to %v: %v, want it ignored", ex.line, leaf.path, mutate(leaf.value), err)
		case !leaf.varies && err == nil:
			t.Errorf("README line %d: %s changed from %v to %v and the comparison passed", ex.line, leaf.path, leaf.value, mutate(leaf.value))
		}
		if leaf.varies {
			ignored++
		} else {
			compared++
		}
	}
	if compared == 0 {
		t.Errorf("README line %d: no compared values in the output", ex.line)
	}
	// A key removed is a mismatch too, an ignored one included.
	for _, key := range []string{"traceId", "status"} {
		tree := decodeJSON(t, ex.output).(map[string]any)
		if _, ok := tree[key]; !ok {
			continue
		}
		delete(tree, key)
		b, err := json.Marshal(tree)
		if err != nil {
			t.Fatal(err)
		}
		if compareOutput("json", string(b), ex.output) == nil {
			t.Errorf("README line %d: %s removed and the comparison passed", ex.line, key)
		}
	}
	t.Logf("README line %d: %d values compared, %d ignored", ex.line, compared, ignored)
}

// checkTextMutations edits the Code: and Message: lines of ex's error output.
func checkTextMutations(t *testing.T, ex readmeExample) {
	t.Helper()
	for _, prefix := range []string{"Code: ", "Message: "} {
		i := strings.Index(ex.output, prefix)
		if i < 0 {
			t.Errorf("README line %d: no %q line in the error output", ex.line, prefix)
			continue
		}
		edited := ex.output[:i+len(prefix)] + "X" + ex.output[i+len(prefix):]
		if compareOutput("text", edited, ex.output) == nil {
			t.Errorf("README line %d: %q line edited and the comparison passed", ex.line, prefix)
		}
	}
	if compareOutput("text", "ERROR:\n", ex.output) == nil {
		t.Errorf("README line %d: a block without Code: and Message: lines passed", ex.line)
	}
}

// TestReadmeInlineGrpcurl checks the grpcurl commands the README shows
// inline (not run by TestReadmeGrpcurl, such as the compose stack's, which
// reaches a public host): each calls a method fetchd serves, and its request
// is a valid FetchRequest.
func TestReadmeInlineGrpcurl(t *testing.T) {
	t.Parallel()
	doc := readReadme(t)
	methods := []string{"fetchd.v1.FetchService/Fetch", "grpc.health.v1.Health/Check"}
	data := regexp.MustCompile(`-d '([^']*)'`)
	for _, c := range doc.inline {
		fields := strings.Fields(c.command)
		if !slices.Contains(methods, fields[len(fields)-1]) {
			t.Errorf("README line %d: %s: the last argument is not one of %v", c.line, c.command, methods)
		}
		if m := data.FindStringSubmatch(c.command); m != nil {
			if err := protojson.Unmarshal([]byte(m[1]), &fetchdv1.FetchRequest{}); err != nil {
				t.Errorf("README line %d: %s: not a FetchRequest: %v", c.line, c.command, err)
			}
		}
	}
}

// readmeDoc is what the README says about calling fetchd.
type readmeDoc struct {
	fetchdArgs   []string        // flags of the readmeFetchdCmd line before the first example
	upstreamArgs []string        // flags of the readmeUpstreamCmd line before the first example
	examples     []readmeExample // grpcurl blocks, in order
	inline       []readmeExample // grpcurl commands in inline code; no output
}

// readmeExample is a ```sh block holding one grpcurl command and the output
// block that follows it.
type readmeExample struct {
	line    int    // 1-based line of the command's opening fence
	command string // the block's text
	lang    string // of the output block: json, or text for an error
	output  string
}

type fencedBlock struct {
	line       int
	lang, text string
}

var inlineGrpcurl = regexp.MustCompile("`(grpcurl [^`]+)`")

// parseReadme finds the grpcurl examples in a README. Each ```sh block whose
// text starts with grpcurl is an example; the next fenced block must be its
// output, ```json for a response or ```text for an error (prose may come in
// between). The start commands are the last sh lines starting with
// readmeFetchdCmd and readmeUpstreamCmd before the first example.
// readReadme reads and parses README.md, or fails the test.
func readReadme(t *testing.T) readmeDoc {
	t.Helper()
	src, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := parseReadme(string(src))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func parseReadme(src string) (readmeDoc, error) {
	var doc readmeDoc
	var blocks []fencedBlock
	var open *fencedBlock
	for i, line := range strings.Split(src, "\n") {
		switch {
		case open == nil && strings.HasPrefix(line, "```"):
			open = &fencedBlock{line: i + 1, lang: strings.TrimPrefix(line, "```")}
		case open != nil && line == "```":
			blocks = append(blocks, *open)
			open = nil
		case open != nil:
			open.text += line + "\n"
		default:
			for _, m := range inlineGrpcurl.FindAllStringSubmatch(line, -1) {
				doc.inline = append(doc.inline, readmeExample{line: i + 1, command: m[1]})
			}
		}
	}
	if open != nil {
		return doc, fmt.Errorf("README line %d: the block is never closed", open.line)
	}
	var fetchdSeen, upstreamSeen bool
	for i := 0; i < len(blocks); i++ {
		b := blocks[i]
		if b.lang != "sh" {
			continue
		}
		if !strings.HasPrefix(b.text, "grpcurl ") {
			if len(doc.examples) > 0 {
				continue
			}
			for line := range strings.Lines(b.text) {
				if args, ok := strings.CutPrefix(strings.TrimSpace(line), readmeFetchdCmd); ok {
					doc.fetchdArgs, fetchdSeen = strings.Fields(args), true
				}
				if args, ok := strings.CutPrefix(strings.TrimSpace(line), readmeUpstreamCmd); ok {
					doc.upstreamArgs, upstreamSeen = strings.Fields(args), true
				}
			}
			continue
		}
		if i+1 == len(blocks) || (blocks[i+1].lang != "json" && blocks[i+1].lang != "text") {
			return doc, fmt.Errorf("README line %d: the grpcurl block is not followed by a ```json or ```text output block", b.line)
		}
		if !strings.Contains(b.text, readmeFetchdAddr) {
			return doc, fmt.Errorf("README line %d: the grpcurl command does not call fetchd at %s", b.line, readmeFetchdAddr)
		}
		out := blocks[i+1]
		doc.examples = append(doc.examples, readmeExample{line: b.line, command: b.text, lang: out.lang, output: out.text})
		i++
	}
	switch {
	case len(doc.examples) > 0 && !fetchdSeen:
		return doc, fmt.Errorf("README: no ```sh line %q before the first grpcurl example", readmeFetchdCmd)
	case len(doc.examples) > 0 && !upstreamSeen:
		return doc, fmt.Errorf("README: no ```sh line %q before the first grpcurl example", readmeUpstreamCmd)
	}
	return doc, nil
}

// compareOutput compares what grpcurl printed with a README output block.
// JSON is compared as a tree, every key and value, except the values of
// variesKeys and variesHeaders; an error (lang "text") is compared on its
// "Code:" and "Message:" lines, which the README block must have.
func compareOutput(lang, want, got string) error {
	switch lang {
	case "json":
		w, err := decodeJSONText(want)
		if err != nil {
			return fmt.Errorf("the README block is not JSON: %w", err)
		}
		g, err := decodeJSONText(got)
		if err != nil {
			return fmt.Errorf("grpcurl printed no JSON: %w", err)
		}
		var diffs []string
		diffJSON("", normalize(w), normalize(g), &diffs)
		if len(diffs) > 0 {
			return errors.New(strings.Join(diffs, "\n"))
		}
		return nil
	case "text":
		var diffs []string
		for _, prefix := range []string{"Code:", "Message:"} {
			w, ok := linePrefixed(want, prefix)
			if !ok {
				return fmt.Errorf("the README block has no %q line", prefix)
			}
			if g, _ := linePrefixed(got, prefix); g != w {
				diffs = append(diffs, fmt.Sprintf("README shows %q, grpcurl printed %q", w, g))
			}
		}
		if len(diffs) > 0 {
			return errors.New(strings.Join(diffs, "\n"))
		}
		return nil
	}
	return fmt.Errorf("output block language %q: want json or text", lang)
}

// linePrefixed returns the first line of s that starts with prefix after its
// indentation, indentation removed.
func linePrefixed(s, prefix string) (string, bool) {
	for line := range strings.Lines(s) {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, prefix) {
			return line, true
		}
	}
	return "", false
}

func decodeJSONText(s string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value")
	}
	return v, nil
}

// variesPlaceholder replaces the values that differ from run to run.
const variesPlaceholder = "(varies)"

// varies says whether obj's value under key differs from run to run.
func varies(obj map[string]any, key string) bool {
	if slices.Contains(variesKeys, key) {
		return true
	}
	name, ok := obj["name"].(string)
	return key == "value" && ok && slices.ContainsFunc(variesHeaders, func(h string) bool { return strings.EqualFold(h, name) })
}

// normalize returns v with the values that vary replaced by a placeholder.
func normalize(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			if varies(v, k) {
				out[k] = variesPlaceholder
			} else {
				out[k] = normalize(e)
			}
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = normalize(e)
		}
		return out
	}
	return v
}

// diffJSON appends to diffs one line per difference between want and got,
// naming where it is (attempts[1].status).
func diffJSON(path string, want, got any, diffs *[]string) {
	at := path
	if at == "" {
		at = "the top level"
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			*diffs = append(*diffs, fmt.Sprintf("%s: README shows an object, grpcurl printed %s", at, jsonText(got)))
			return
		}
		keys := make([]string, 0, len(w)+len(g))
		for k := range w {
			keys = append(keys, k)
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			wv, inW := w[k]
			gv, inG := g[k]
			switch {
			case !inG:
				*diffs = append(*diffs, fmt.Sprintf("%s: README shows %s, grpcurl printed no %s", p, jsonText(wv), k))
			case !inW:
				*diffs = append(*diffs, fmt.Sprintf("%s: README shows no %s, grpcurl printed %s", p, k, jsonText(gv)))
			default:
				diffJSON(p, wv, gv, diffs)
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok {
			*diffs = append(*diffs, fmt.Sprintf("%s: README shows a list, grpcurl printed %s", at, jsonText(got)))
			return
		}
		if len(w) != len(g) {
			*diffs = append(*diffs, fmt.Sprintf("%s: README shows %d entries, grpcurl printed %d: %s", at, len(w), len(g), jsonText(got)))
			return
		}
		for i := range w {
			diffJSON(fmt.Sprintf("%s[%d]", path, i), w[i], g[i], diffs)
		}
	default:
		if want != got {
			*diffs = append(*diffs, fmt.Sprintf("%s: README shows %s, grpcurl printed %s", at, jsonText(want), jsonText(got)))
		}
	}
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// jsonLeaf is a string, number or boolean in a JSON tree, and where it is.
type jsonLeaf struct {
	path   jsonPath
	value  any
	varies bool
}

type jsonPath []any // string keys and int indexes

func (p jsonPath) String() string {
	var b strings.Builder
	for _, e := range p {
		if i, ok := e.(int); ok {
			fmt.Fprintf(&b, "[%d]", i)
		} else {
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			fmt.Fprint(&b, e)
		}
	}
	return b.String()
}

func jsonLeaves(t *testing.T, s string) []jsonLeaf {
	t.Helper()
	var leaves []jsonLeaf
	var walk func(path jsonPath, v any, varies bool)
	walk = func(path jsonPath, v any, vary bool) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				walk(append(slices.Clone(path), k), e, vary || varies(v, k))
			}
		case []any:
			for i, e := range v {
				walk(append(slices.Clone(path), i), e, vary)
			}
		default:
			leaves = append(leaves, jsonLeaf{path: path, value: v, varies: vary})
		}
	}
	walk(nil, decodeJSON(t, s), false)
	return leaves
}

func decodeJSON(t *testing.T, s string) any {
	t.Helper()
	v, err := decodeJSONText(s)
	if err != nil {
		t.Fatalf("%v:\n%s", err, s)
	}
	return v
}

func setLeaf(tree any, path jsonPath, v any) {
	for i, e := range path {
		last := i == len(path)-1
		switch k := e.(type) {
		case string:
			m := tree.(map[string]any)
			if last {
				m[k] = v
				return
			}
			tree = m[k]
		case int:
			l := tree.([]any)
			if last {
				l[k] = v
				return
			}
			tree = l[k]
		}
	}
}

// mutate returns a value of v's kind that differs from v.
func mutate(v any) any {
	switch v := v.(type) {
	case json.Number:
		if n, err := v.Int64(); err == nil {
			return json.Number(strconv.FormatInt(n+1, 10))
		}
		f, _ := v.Float64()
		return json.Number(strconv.FormatFloat(f+1, 'g', -1, 64))
	case bool:
		return !v
	case string:
		return v + "x"
	case nil:
		return "x"
	}
	panic(fmt.Sprintf("mutate %T", v))
}

// findGrpcurl looks grpcurl up on PATH, then in the repository's .bin (where
// the Makefile installs its pinned version). Without it the test is skipped,
// except when CI=true: CI must run the README's examples, so it fails.
func findGrpcurl(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("grpcurl"); err == nil {
		return p
	}
	p, err := filepath.Abs(filepath.Join("..", ".bin", "grpcurl"))
	if err == nil {
		if _, err = os.Stat(p); err == nil {
			return p
		}
	}
	const install = "`make tools` installs it (GOBIN=$PWD/.bin go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3)"
	if os.Getenv("CI") == "true" {
		t.Fatalf("grpcurl is neither on PATH nor in .bin/, and CI=true: CI must run the README's examples; %s", install)
	}
	t.Skipf("grpcurl is neither on PATH nor in .bin/, so the README's examples are not run; %s", install)
	return ""
}

// goBuildUpstream builds examples/upstream into bin.
func goBuildUpstream(ctx context.Context, bin string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./upstream").CombinedOutput(); err != nil {
		return &cmdError{"go build ./upstream", err, out}
	}
	return nil
}

// startUpstream starts the demo upstream and waits for its "upstream:
// listening on http://ADDR" line to learn its address. It is killed at the
// end of the test.
func startUpstream(t *testing.T, bin string, args ...string) string {
	t.Helper()
	c := startCommand(t, "upstream", bin, func(line []byte) (string, bool) {
		return strings.CutPrefix(string(line), "upstream: listening on http://")
	}, args...)
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		<-c.done
		if t.Failed() {
			t.Logf("upstream stderr:\n%s", c.logs())
		}
	})
	return c.addr
}

// runShell runs command with sh -c, grpcurlDir first on PATH, and returns
// what it wrote to stdout and stderr, interleaved, and its exit status.
func runShell(t *testing.T, grpcurlDir, command string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "PATH="+grpcurlDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &exit) && exit.ExitCode() > 0:
		return out.String(), exit.ExitCode()
	}
	t.Fatalf("sh -c %q: %v\n%s", command, err, out.Bytes())
	return "", 0
}
