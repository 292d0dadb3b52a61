package policy

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The decoder walks a yaml.Node tree into the tagged structs of file.go.
// Every problem it finds is recorded with the key's path and line; a value
// that cannot be decoded is left unset, so decoding always runs to the end
// and reports every problem (up to maxErrors).
//
// Supported field types: structs (a YAML mapping; field names from the yaml
// tag; an embedded struct tagged ",inline" contributes its fields), slices (a
// YAML sequence), maps with string keys (a mapping of names), and the leaves
// opt[T] for T in time.Duration, byteSize, int, float64, bool, string, []int,
// []string and secrets. A struct field named At of type pos records where the
// mapping was written.

// pos is where a value was written: its key path and 1-based line.
type pos struct {
	path string
	line int
}

// written reports whether the value was in the file.
func (p pos) written() bool { return p.line > 0 }

func (p pos) key(name string) pos {
	if p.path == "" {
		return pos{path: name, line: p.line}
	}
	return pos{path: p.path + "." + name, line: p.line}
}

func (p pos) index(i, line int) pos {
	return pos{path: fmt.Sprintf("%s[%d]", p.path, i), line: line}
}

// opt is an optional scalar (or list of scalars) of the file: Set says it
// was written and decoded, At where.
type opt[T any] struct {
	V   T
	Set bool
	At  pos
}

// byteSize is a size in bytes, written as an integer or as a string with a
// unit (B, KiB, MiB, GiB).
type byteSize int64

// secrets is a list of strings that may hold secrets (token hashes, or a
// raw token pasted by mistake): messages about it never show a value.
type secrets []string

// leaf is implemented by opt: it decodes one value node.
type leaf interface {
	decodeLeaf(d *decoder, n *yaml.Node, at pos)
}

func (o *opt[T]) decodeLeaf(d *decoder, n *yaml.Node, at pos) {
	o.At = at
	var ok bool
	switch p := any(&o.V).(type) {
	case *time.Duration:
		*p, ok = d.duration(n, at)
	case *byteSize:
		*p, ok = d.size(n, at)
	case *int:
		*p, ok = d.integer(n, at)
	case *float64:
		*p, ok = d.float(n, at)
	case *bool:
		*p, ok = d.boolean(n, at)
	case *string:
		*p, ok = d.str(n, at)
	case *[]int:
		*p, ok = decodeList(d, n, at, d.integer)
	case *[]string:
		*p, ok = decodeList(d, n, at, d.str)
	case *secrets:
		var v []string
		v, ok = decodeList(d, n, at, d.secret)
		*p = v
	default:
		panic(fmt.Sprintf("policy: opt of unsupported type %T", o.V))
	}
	o.Set = ok
}

type decoder struct {
	file string
	errs []*Error
}

func (d *decoder) fail(at pos, format string, args ...any) {
	if len(d.errs) > maxErrors {
		return
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: at.line, Key: at.path, Msg: fmt.Sprintf(format, args...)})
}

// value decodes n into v (addressable).
func (d *decoder) value(v reflect.Value, n *yaml.Node, at pos) {
	if !d.plain(n, at) {
		return
	}
	if l, ok := v.Addr().Interface().(leaf); ok {
		l.decodeLeaf(d, n, at)
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.structure(v, n, at)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(at, "must be a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.value(s.Index(i), c, at.index(i, c.Line))
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.fail(at, "must be a mapping of names, got %s", describe(n))
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		d.pairs(n, at, func(name string, k, val *yaml.Node) {
			e := reflect.New(v.Type().Elem()).Elem()
			d.value(e, val, pos{path: at.key(name).path, line: k.Line})
			m.SetMapIndex(reflect.ValueOf(name), e)
		})
		v.Set(m)
	default:
		panic(fmt.Sprintf("policy: cannot decode into %s", v.Type()))
	}
}

// plain refuses what the file format does not use: aliases, anchors, tags
// of its own, and keys without a value.
func (d *decoder) plain(n *yaml.Node, at pos) bool {
	switch {
	case n.Kind == yaml.AliasNode:
		d.fail(at, "aliases (*%s) are not supported: write the value out; a value that starts with * (a host pattern such as \"*.example.com\") must be quoted", clip(n.Value, 40))
	case n.Anchor != "":
		d.fail(at, "anchors (&%s) are not supported: write the value out", clip(n.Anchor, 40))
	case n.Tag != "" && !strings.HasPrefix(n.Tag, "!!"):
		d.fail(at, "YAML tag %s is not supported", clip(n.Tag, 40))
	case n.Kind == yaml.ScalarNode && n.Tag == "!!null":
		d.fail(at, "has no value: give one, or remove the key (an empty section is written {})")
	default:
		return true
	}
	return false
}

// structure decodes a mapping into the struct v, refusing unknown and
// duplicate keys.
func (d *decoder) structure(v reflect.Value, n *yaml.Node, at pos) {
	if n.Kind != yaml.MappingNode {
		d.fail(at, "must be a mapping, got %s", describe(n))
		return
	}
	fields := fieldsOf(v.Type())
	setAt(v, at)
	d.pairs(n, at, func(name string, k, val *yaml.Node) {
		idx, ok := fields[name]
		if !ok {
			d.fail(pos{path: at.key(name).path, line: k.Line}, "unknown key%s", knownKeys(name, fields))
			return
		}
		d.value(v.FieldByIndex(idx), val, pos{path: at.key(name).path, line: k.Line})
	})
}

// pairs calls f for each key of the mapping n, in order, refusing keys that
// are not plain strings and keys written twice.
func (d *decoder) pairs(n *yaml.Node, at pos, f func(name string, k, v *yaml.Node)) {
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		kat := pos{path: at.path, line: k.Line}
		if !d.plain(k, kat) {
			continue
		}
		if k.Kind != yaml.ScalarNode || k.Tag != "!!str" {
			d.fail(kat, "keys must be names, got %s", describe(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.fail(pos{path: at.key(k.Value).path, line: k.Line}, "duplicate key (first written on line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		f(k.Value, k, val)
	}
}

// fieldsOf maps the yaml names of t's fields to their index paths.
func fieldsOf(t reflect.Type) map[string][]int {
	m := make(map[string][]int)
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if tag == "" || tag == "-" {
			continue
		}
		if tag == ",inline" {
			for name, idx := range fieldsOf(f.Type) {
				m[name] = append([]int{i}, idx...)
			}
			continue
		}
		m[tag] = []int{i}
	}
	return m
}

var posType = reflect.TypeFor[pos]()

// setAt records where the struct v (and its inline parts) was written.
func setAt(v reflect.Value, at pos) {
	for i := range v.NumField() {
		f := v.Type().Field(i)
		switch {
		case f.Name == "At" && f.Type == posType:
			v.Field(i).Set(reflect.ValueOf(at))
		case f.Anonymous && f.Type.Kind() == reflect.Struct:
			setAt(v.Field(i), at)
		}
	}
}

// knownKeys lists the keys a mapping takes, with a suggestion when name is
// close to one of them.
func knownKeys(name string, fields map[string][]int) string {
	names := make([]string, 0, len(fields))
	best, bestDist := "", 3
	for k := range fields {
		names = append(names, k)
		if dist := editDistance(name, k); dist < bestDist || (dist == bestDist && k < best) {
			best, bestDist = k, dist
		}
	}
	slices.Sort(names)
	msg := " (known: " + strings.Join(names, ", ") + ")"
	if best != "" {
		msg = "; did you mean " + best + "?" + msg
	}
	return msg
}

// editDistance is the Levenshtein distance of two short strings.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// describe names what a node is, for "got ..." in messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.DocumentNode:
		return "a document"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.Tag {
	case "!!str":
		return fmt.Sprintf("the string %q", clip(n.Value, 40))
	case "!!int", "!!float":
		return "the number " + clip(n.Value, 40)
	case "!!bool":
		return "the boolean " + n.Value
	case "!!null":
		return "nothing"
	}
	return fmt.Sprintf("%q (%s)", clip(n.Value, 40), n.Tag)
}

// kindOf names what a node is without showing its value.
func kindOf(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Tag == "!!str":
		return "a string"
	case n.Tag == "!!int" || n.Tag == "!!float":
		return "a number"
	case n.Tag == "!!bool":
		return "a boolean"
	}
	return "a value of type " + n.Tag
}

func (d *decoder) scalar(n *yaml.Node, at pos, want string) bool {
	if n.Kind != yaml.ScalarNode {
		d.fail(at, "must be %s, got %s", want, describe(n))
		return false
	}
	return true
}

func (d *decoder) integer(n *yaml.Node, at pos) (int, bool) {
	if !d.plain(n, at) || !d.scalar(n, at, "a whole number") {
		return 0, false
	}
	switch n.Tag {
	case "!!int":
	case "!!float":
		d.fail(at, "must be a whole number, got %s", clip(n.Value, 40))
		return 0, false
	case "!!str":
		d.fail(at, "must be a whole number, got %s (write it without quotes)", describe(n))
		return 0, false
	default:
		d.fail(at, "must be a whole number, got %s", describe(n))
		return 0, false
	}
	var i int64
	if err := n.Decode(&i); err != nil || i < math.MinInt32 || i > math.MaxInt32 {
		d.fail(at, "%s is out of range", clip(n.Value, 40))
		return 0, false
	}
	return int(i), true
}

func (d *decoder) float(n *yaml.Node, at pos) (float64, bool) {
	if !d.plain(n, at) || !d.scalar(n, at, "a number") {
		return 0, false
	}
	if n.Tag != "!!int" && n.Tag != "!!float" {
		d.fail(at, "must be a number, got %s", describe(n))
		return 0, false
	}
	var f float64
	if err := n.Decode(&f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		d.fail(at, "must be a finite number, got %s", clip(n.Value, 40))
		return 0, false
	}
	return f, true
}

func (d *decoder) boolean(n *yaml.Node, at pos) (bool, bool) {
	if !d.plain(n, at) || !d.scalar(n, at, "true or false") {
		return false, false
	}
	if n.Tag != "!!bool" {
		d.fail(at, "must be true or false, got %s", describe(n))
		return false, false
	}
	var b bool
	if err := n.Decode(&b); err != nil {
		d.fail(at, "must be true or false, got %s", describe(n))
		return false, false
	}
	return b, true
}

func (d *decoder) str(n *yaml.Node, at pos) (string, bool) {
	if !d.plain(n, at) || !d.scalar(n, at, "a string") {
		return "", false
	}
	if n.Tag != "!!str" {
		d.fail(at, "must be a string, got %s (quote it)", describe(n))
		return "", false
	}
	return n.Value, true
}

// secret is str for values that must not be shown in a message.
func (d *decoder) secret(n *yaml.Node, at pos) (string, bool) {
	if !d.plain(n, at) {
		return "", false
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		d.fail(at, "must be a string (the value is not shown)")
		return "", false
	}
	return n.Value, true
}

const durationHint = "write e.g. 3s or 250ms"

func (d *decoder) duration(n *yaml.Node, at pos) (time.Duration, bool) {
	if !d.plain(n, at) || !d.scalar(n, at, "a duration ("+durationHint+")") {
		return 0, false
	}
	switch n.Tag {
	case "!!str":
	case "!!int", "!!float":
		d.fail(at, "%s has no unit (%s)", clip(n.Value, 40), durationHint)
		return 0, false
	default:
		d.fail(at, "must be a duration (%s), got %s", durationHint, describe(n))
		return 0, false
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		d.fail(at, "%q is not a duration (%s)", clip(n.Value, 40), durationHint)
		return 0, false
	}
	return v, true
}

const sizeHint = "write e.g. 4MiB, 512KiB or a number of bytes; units are B, KiB, MiB and GiB"

func (d *decoder) size(n *yaml.Node, at pos) (byteSize, bool) {
	if !d.plain(n, at) || !d.scalar(n, at, "a size ("+sizeHint+")") {
		return 0, false
	}
	switch n.Tag {
	case "!!int":
		var i int64
		if err := n.Decode(&i); err != nil {
			d.fail(at, "%s is out of range", clip(n.Value, 40))
			return 0, false
		}
		if i < 0 {
			d.fail(at, "must not be negative, got %d", i)
			return 0, false
		}
		return byteSize(i), true
	case "!!str":
		v, msg := parseSize(n.Value)
		if msg != "" {
			d.fail(at, "%q %s (%s)", clip(n.Value, 40), msg, sizeHint)
			return 0, false
		}
		return v, true
	}
	d.fail(at, "must be a size (%s), got %s", sizeHint, describe(n))
	return 0, false
}

// decodeList decodes a sequence with elem; it reports false when any
// element failed.
func decodeList[T any](d *decoder, n *yaml.Node, at pos, elem func(*yaml.Node, pos) (T, bool)) ([]T, bool) {
	if n.Kind != yaml.SequenceNode {
		d.fail(at, "must be a list, got %s", kindOf(n))
		return nil, false
	}
	out := make([]T, 0, len(n.Content))
	ok := true
	for i, c := range n.Content {
		v, good := elem(c, at.index(i, c.Line))
		ok = ok && good
		out = append(out, v)
	}
	return out, ok
}
