package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/fetchd/fetchd/internal/identity"
)

// tokenCommand runs `fetchd token`: it issues a new bearer token for a
// caller and prints the line the policy file stores (only the hash of the
// token goes into the file). With --hash it reads an existing token from
// stdin and prints its hash line instead.
func tokenCommand(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fetchd token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	hash := fs.Bool("hash", false, "read a token from stdin and print its sha256: line for the policy file")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: fetchd token [--hash]")
		fmt.Fprintln(stderr, "  Issues a new caller token and prints the sha256: line to put in the caller's tokens list.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("token: unexpected argument %q", fs.Arg(0))
	}
	if *hash {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("token: reading stdin: %w", err)
		}
		tok := strings.TrimSpace(line)
		if tok == "" {
			return errors.New("token: --hash reads a token from stdin, and stdin was empty")
		}
		fmt.Fprintln(stdout, identity.FormatTokenHash(identity.HashToken(tok)))
		return nil
	}
	tok, err := identity.NewToken()
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintf(stdout, "token: %s\n", tok)
	fmt.Fprintf(stdout, "policy: %s\n", identity.FormatTokenHash(identity.HashToken(tok)))
	fmt.Fprintln(stderr, "Give the token to the caller (gRPC metadata: authorization: Bearer <token>);")
	fmt.Fprintln(stderr, "put the policy line in its callers[].tokens list, then reload fetchd (SIGHUP).")
	return nil
}
