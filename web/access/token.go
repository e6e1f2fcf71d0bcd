package access

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Sources a publish grant may allow (the names of package sfu's sources
// that a browser publishes; "screen" also covers a screen share's audio).
const (
	SourceCamera     = "camera"
	SourceMicrophone = "microphone"
	SourceScreen     = "screen"
)

// AllSources lists every source a publish grant can allow.
func AllSources() []string { return []string{SourceCamera, SourceMicrophone, SourceScreen} }

// AnyRoom as a token's room makes it valid for every room. Only admin
// tokens for the cluster API (VerifyAdmin) use it; Verify never accepts
// it for joining.
const AnyRoom = "*"

// leeway is the clock skew tolerated on expiry and not-before.
const leeway = 5 * time.Second

// Grants say what a token's holder may do in its room.
type Grants struct {
	// Publish allows sending media, from Sources only.
	Publish bool `json:"publish,omitempty"`
	// Sources lists what may be published: SourceCamera,
	// SourceMicrophone, SourceScreen. Empty with Publish means all.
	Sources []string `json:"sources,omitempty"`
	// Subscribe allows receiving the room's media.
	Subscribe bool `json:"subscribe,omitempty"`
	// Chat allows sending chat messages (everyone receives them).
	Chat bool `json:"chat,omitempty"`
	// Hidden joins without being listed to the others.
	Hidden bool `json:"hidden,omitempty"`
	// Admin allows removing and muting participants, locking and ending
	// the room, and reading the cluster API.
	Admin bool `json:"admin,omitempty"`
}

// MayPublish reports whether the grants allow publishing source (a
// screen's audio counts as "screen").
func (g Grants) MayPublish(source string) bool {
	if !g.Publish {
		return false
	}
	if source == "screen-audio" {
		source = SourceScreen
	}
	return len(g.Sources) == 0 || slices.Contains(g.Sources, source)
}

// Claims are a token's contents.
type Claims struct {
	// Room is the room the token is for (AnyRoom: every room).
	Room string `json:"room"`
	// Name is the display name shown to the others; empty: the one the
	// user types.
	Name string `json:"name,omitempty"`
	// Grants say what the holder may do.
	Grants Grants `json:"grants"`
	// RegisteredClaims: Subject is the identity (one session per
	// identity and room), ExpiresAt is required.
	jwt.RegisteredClaims
}

// Identity returns the token's identity (its subject).
func (c Claims) Identity() string { return c.Subject }

// ParseGrants parses a comma separated grant list as the token command
// takes it: publish, subscribe, chat, hidden, admin; "publish:camera+
// microphone" limits the sources.
func ParseGrants(list string) (Grants, error) {
	var g Grants
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		name, sources, limited := strings.Cut(item, ":")
		switch name {
		case "":
			continue
		case "publish":
			g.Publish = true
			if limited {
				for _, s := range strings.Split(sources, "+") {
					if !slices.Contains(AllSources(), s) {
						return Grants{}, fmt.Errorf("%w: unknown source %q (camera, microphone, screen)", ErrBadClaims, s)
					}
					g.Sources = append(g.Sources, s)
				}
			}
		case "subscribe":
			g.Subscribe = true
		case "chat":
			g.Chat = true
		case "hidden":
			g.Hidden = true
		case "admin":
			g.Admin = true
		default:
			return Grants{}, fmt.Errorf("%w: unknown grant %q (publish, subscribe, chat, hidden, admin)", ErrBadClaims, name)
		}
		if limited && name != "publish" {
			return Grants{}, fmt.Errorf("%w: only publish takes sources, not %q", ErrBadClaims, name)
		}
	}
	return g, nil
}

// Mint signs claims with key id kid (HS256, "kid" in the header). The
// claims need a room, an identity (Subject) and an expiry.
func Mint(ks KeySet, kid string, c Claims) (string, error) {
	secret, ok := ks.secret(kid)
	if !ok {
		return "", fmt.Errorf("%w: %q", ErrUnknownKey, kid)
	}
	switch {
	case c.Room == "":
		return "", fmt.Errorf("%w: no room", ErrBadClaims)
	case c.Subject == "":
		return "", fmt.Errorf("%w: no identity", ErrBadClaims)
	case c.ExpiresAt == nil:
		return "", fmt.Errorf("%w: no expiry", ErrBadClaims)
	}
	for _, s := range c.Grants.Sources {
		if !slices.Contains(AllSources(), s) {
			return "", fmt.Errorf("%w: unknown source %q", ErrBadClaims, s)
		}
	}
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
	t.Header["kid"] = kid
	return t.SignedString(secret)
}

// Verify checks a token for joining room at time now: its signature with
// the key its "kid" names, its expiry (required) and not-before, and its
// room. Errors wrap ErrTokenMissing, ErrTokenInvalid, ErrTokenExpired or
// ErrWrongRoom.
func Verify(ks KeySet, token, room string, now time.Time) (Claims, error) {
	c, err := parse(ks, token, now)
	if err != nil {
		return Claims{}, err
	}
	if c.Room != room {
		return Claims{}, fmt.Errorf("%w: the token is for room %q, not %q", ErrWrongRoom, c.Room, room)
	}
	return c, nil
}

// VerifyAdmin checks a token for the cluster API: valid as in Verify, for
// AnyRoom, with the admin grant (else ErrForbidden).
func VerifyAdmin(ks KeySet, token string, now time.Time) (Claims, error) {
	c, err := parse(ks, token, now)
	if err != nil {
		return Claims{}, err
	}
	if c.Room != AnyRoom || !c.Grants.Admin {
		return Claims{}, fmt.Errorf("%w: the cluster API needs an admin token for room %q", ErrForbidden, AnyRoom)
	}
	return c, nil
}

// parse checks signature, algorithm, expiry and identity.
func parse(ks KeySet, token string, now time.Time) (Claims, error) {
	if token == "" {
		return Claims{}, ErrTokenMissing
	}
	var c Claims
	_, err := jwt.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		secret, ok := ks.secret(kid)
		if !ok {
			return nil, fmt.Errorf("unknown key id %q", kid)
		}
		return secret, nil
	},
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired), errors.Is(err, jwt.ErrTokenNotValidYet):
		return Claims{}, fmt.Errorf("%w: %v", ErrTokenExpired, err)
	case err != nil:
		return Claims{}, fmt.Errorf("%w: %v", ErrTokenInvalid, err)
	case c.Subject == "" || c.Room == "":
		return Claims{}, fmt.Errorf("%w: no identity or room", ErrTokenInvalid)
	}
	return c, nil
}
