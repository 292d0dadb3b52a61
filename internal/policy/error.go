package policy

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUnknownPolicy is wrapped by the error Resolve returns for a policy name
// the file does not define.
var ErrUnknownPolicy = errors.New("policy is not defined")

// Error is one problem found in a policy file. Load returns every problem it
// finds (up to a limit) joined with errors.Join; errors.As finds the first.
type Error struct {
	File string // the name given to Load, or the path given to LoadFile
	Line int    // 1-based; 0 when the problem is the file as a whole
	Key  string // path of the key, e.g. "targets[1].retry.max_attempts"; "" for the file as a whole
	Msg  string // what is wrong and what to write instead
}

// Error formats the problem as "file:line: key: message".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// maxErrors bounds how many problems one Load reports.
const maxErrors = 20

// unknownPolicyError is Resolve's answer to a name the file does not define.
type unknownPolicyError struct {
	name    string
	defined string // "default, payments"
}

func (e *unknownPolicyError) Error() string {
	return fmt.Sprintf("policy %q is not defined (defined: %s)", e.name, e.defined)
}

func (e *unknownPolicyError) Unwrap() error { return ErrUnknownPolicy }

// clip shortens s to at most n bytes for a message, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
