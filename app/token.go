package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/confab/confab/web/access"
)

// DefaultTokenTTL is how long a token of `confab token` is valid unless
// --ttl says otherwise.
const DefaultTokenTTL = time.Hour

// LoadAPIKeys reads and parses an API keys file (--api-keys-file).
func LoadAPIKeys(path string) (access.KeySet, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return access.KeySet{}, fmt.Errorf("--api-keys-file: %w", err)
	}
	ks, err := access.ParseKeys(data)
	if err != nil {
		return access.KeySet{}, fmt.Errorf("--api-keys-file %s: %w", path, err)
	}
	return ks, nil
}

// TokenCommand implements `confab token`: it signs an access token and
// prints it on the last line of out (before it, a line describing it and,
// with --url, the room link that carries it). It returns the exit status:
// 0, or 2 after printing a one-line error to errOut.
func TokenCommand(args []string, out, errOut io.Writer, now time.Time) int {
	fs := flag.NewFlagSet("confab token", flag.ContinueOnError)
	fs.SetOutput(errOut)
	keysFile := fs.String("api-keys-file", "", "file of API keys (as for the server); required")
	kid := fs.String("key-id", "", "id of the key to sign with (default: the only key of the file)")
	room := fs.String("room", "", `room the token is for ("*": every room, for an admin token of the cluster API); required`)
	identity := fs.String("identity", "", "identity of the holder (one session per identity and room); required")
	name := fs.String("name", "", "display name (empty: the user types one)")
	grants := fs.String("grant", "publish,subscribe,chat", "comma separated grants: publish (publish:camera+microphone+screen limits the sources), subscribe, chat, hidden, admin")
	ttl := fs.Duration("ttl", DefaultTokenTTL, "how long the token is valid")
	base := fs.String("url", "", "base URL of a node, e.g. http://localhost:8080: also print the room link")
	fs.Usage = func() {
		fmt.Fprintln(errOut, "Usage: confab token --api-keys-file F --room R --identity ID [--name N] [--grant LIST] [--ttl 1h] [--key-id K] [--url U]")
		fs.PrintDefaults()
	}
	fail := func(err error) int {
		fmt.Fprintf(errOut, "confab token: %v\n", err)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	switch {
	case fs.NArg() > 0:
		return fail(fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	case *keysFile == "":
		return fail(errors.New("--api-keys-file is required"))
	case *room == "":
		return fail(errors.New("--room is required"))
	case *identity == "":
		return fail(errors.New("--identity is required"))
	case *ttl <= 0:
		return fail(errors.New("--ttl must be positive"))
	}
	ks, err := LoadAPIKeys(*keysFile)
	if err != nil {
		return fail(err)
	}
	if *kid == "" {
		ids := ks.IDs()
		if len(ids) != 1 {
			return fail(fmt.Errorf("the file has %d keys (%s): choose one with --key-id", len(ids), strings.Join(ids, ", ")))
		}
		*kid = ids[0]
	}
	g, err := access.ParseGrants(*grants)
	if err != nil {
		return fail(err)
	}
	exp := now.Add(*ttl)
	tok, err := access.Mint(ks, *kid, access.Claims{
		Room: *room, Name: *name, Grants: g,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   *identity,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
		},
	})
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(out, "# token for %q in room %q, grants %q, key %q, expires %s\n", *identity, *room, *grants, *kid, exp.UTC().Format(time.RFC3339))
	if *base != "" && *room != access.AnyRoom {
		fmt.Fprintf(out, "%s/rooms/%s?%s\n", strings.TrimRight(*base, "/"), url.PathEscape(*room), url.Values{"token": {tok}}.Encode())
	}
	fmt.Fprintln(out, tok)
	return 0
}
