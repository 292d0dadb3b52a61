package policy

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"

	"go.yaml.in/yaml/v3"
)

// Version is the policy file format this package reads.
const Version = 1

// LoadFile reads and loads the policy file at path; messages name the path
// as given.
func LoadFile(path string) (*Set, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return Load(path, data)
}

// Load checks and compiles a policy file; name is the file name used in
// messages. The error lists every problem found (up to 20), one per line, each
// an *Error naming the line and key (errors.As finds the first); the Set is
// nil then. Load never panics, whatever the bytes.
func Load(name string, data []byte) (*Set, error) {
	root, err := parse(name, data)
	if err != nil {
		return nil, err
	}
	d := &decoder{file: name}
	if !d.version(root) {
		return nil, d.err()
	}
	var doc fileDoc
	d.value(reflect.ValueOf(&doc).Elem(), root, pos{line: root.Line})
	if len(d.errs) > 0 {
		return nil, d.err()
	}
	c := &compiler{decoder: d, doc: &doc}
	s := c.compile()
	if len(d.errs) > 0 {
		return nil, d.err()
	}
	sum := sha256.Sum256(data)
	s.digest = hex.EncodeToString(sum[:])
	return s, nil
}

// err joins the problems found, in line order.
func (d *decoder) err() error {
	slices.SortStableFunc(d.errs, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
	errs := make([]error, 0, len(d.errs)+1)
	for i, e := range d.errs {
		if i == maxErrors {
			errs = append(errs, fmt.Errorf("%s: more problems not shown; fix these first", d.file))
			break
		}
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// parse returns the root mapping of the file's one YAML document.
func parse(name string, data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: name, Msg: `empty policy file (write at least "version: 1")`}
		}
		return nil, syntaxError(name, data, err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].Tag == "!!null" {
		return nil, &Error{File: name, Msg: `empty policy file (write at least "version: 1")`}
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxError(name, data, err)
	default:
		return nil, &Error{File: name, Line: next.Line, Msg: "a second YAML document starts here; a policy file holds exactly one (remove the ---)"}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, &Error{File: name, Line: root.Line, Msg: "a policy file is a mapping of sections (version, server, egress, defaults, caps, protection, idempotency, policies, targets, callers, anonymous), got " + describe(root)}
	}
	return root, nil
}

// unquotedStar finds a value that starts with "*" outside quotes: YAML reads
// it as an alias, and the parser's message does not say so.
var unquotedStar = regexp.MustCompile(`(?m)^[^#'"\n]*(?:[:\[,]|^\s*-)\s*\*`)

// syntaxError reports a file that is not YAML.
func syntaxError(name string, data []byte, err error) error {
	msg := err.Error()
	if loc := unquotedStar.FindIndex(data); loc != nil {
		line := 1 + bytes.Count(data[:loc[1]], []byte("\n"))
		msg += fmt.Sprintf(` (line %d has an unquoted value starting with *, which YAML reads as an alias: quote host patterns, e.g. "*.example.com")`, line)
	}
	return &Error{File: name, Msg: msg}
}

// version checks the version key before anything else, so that a file of
// another version is refused for that reason alone.
func (d *decoder) version(root *yaml.Node) bool {
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Value != "version" {
			continue
		}
		at := pos{path: "version", line: k.Line}
		n, ok := d.integer(v, at)
		if !ok {
			return false
		}
		if n != Version {
			d.fail(at, "%d is not supported: this fetchd reads version %d", n, Version)
			return false
		}
		return true
	}
	d.fail(pos{path: "version", line: root.Line}, `required: write "version: 1" at the top of the file`)
	return false
}
