package access

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	secretA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-key-one"
	secretB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-key-two"
)

func testKeys(t *testing.T) KeySet {
	t.Helper()
	ks, err := ParseKeys([]byte("# keys\nk1 " + secretA + "\n\n  k2\t" + secretB + "  \n"))
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func TestParseKeys(t *testing.T) {
	long := strings.Repeat("s", MinSecretLen)
	tests := []struct {
		name, data string
		ids        []string
		err        string
	}{
		{"two keys and comments", "# c\nb " + long + "\na " + long + "\n", []string{"a", "b"}, ""},
		{"empty", "# nothing\n\n", nil, "no keys"},
		{"one field", "k1\n", nil, "line 1"},
		{"three fields", "k1 " + long + " extra\n", nil, "line 1"},
		{"short secret", "\nk1 short\n", nil, "line 2: secret of key \"k1\" is shorter"},
		{"duplicate", "k1 " + long + "\nk1 " + long + "\n", nil, "appears twice"},
		{"long id", strings.Repeat("i", 65) + " " + long, nil, "key id longer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ks, err := ParseKeys([]byte(tt.data))
			if tt.err != "" {
				if !errors.Is(err, ErrBadKeys) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want ErrBadKeys with %q", err, tt.err)
				}
				if strings.Contains(err.Error(), long) || strings.Contains(err.Error(), "short\"") {
					t.Fatalf("error shows the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(ks.IDs(), ","); got != strings.Join(tt.ids, ",") {
				t.Fatalf("ids = %s, want %v", got, tt.ids)
			}
		})
	}
}

func TestParseGrants(t *testing.T) {
	tests := []struct {
		in   string
		want Grants
		err  bool
	}{
		{"publish,subscribe", Grants{Publish: true, Subscribe: true}, false},
		{" chat , hidden,admin", Grants{Chat: true, Hidden: true, Admin: true}, false},
		{"publish:camera+microphone", Grants{Publish: true, Sources: []string{"camera", "microphone"}}, false},
		{"", Grants{}, false},
		{"publish:tv", Grants{}, true},
		{"subscribe:camera", Grants{}, true},
		{"root", Grants{}, true},
	}
	for _, tt := range tests {
		got, err := ParseGrants(tt.in)
		if (err != nil) != tt.err {
			t.Errorf("ParseGrants(%q) err = %v, want error %v", tt.in, err, tt.err)
			continue
		}
		if !tt.err && (got.Publish != tt.want.Publish || got.Subscribe != tt.want.Subscribe || got.Chat != tt.want.Chat ||
			got.Hidden != tt.want.Hidden || got.Admin != tt.want.Admin || strings.Join(got.Sources, "+") != strings.Join(tt.want.Sources, "+")) {
			t.Errorf("ParseGrants(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestMayPublish(t *testing.T) {
	all := Grants{Publish: true}
	cam := Grants{Publish: true, Sources: []string{SourceCamera}}
	screen := Grants{Publish: true, Sources: []string{SourceScreen}}
	tests := []struct {
		g      Grants
		source string
		want   bool
	}{
		{all, "camera", true}, {all, "screen-audio", true},
		{cam, "camera", true}, {cam, "microphone", false}, {cam, "screen", false},
		{screen, "screen-audio", true}, {Grants{}, "camera", false},
	}
	for _, tt := range tests {
		if got := tt.g.MayPublish(tt.source); got != tt.want {
			t.Errorf("%+v.MayPublish(%q) = %v, want %v", tt.g, tt.source, got, tt.want)
		}
	}
}

func claims(room, identity string, exp time.Time, g Grants) Claims {
	return Claims{Room: room, Name: "Alice", Grants: g, RegisteredClaims: jwt.RegisteredClaims{
		Subject: identity, ExpiresAt: jwt.NewNumericDate(exp), IssuedAt: jwt.NewNumericDate(exp.Add(-time.Hour)),
	}}
}

func TestVerify(t *testing.T) {
	ks := testKeys(t)
	now := time.Unix(1_800_000_000, 0)
	good := claims("r1", "alice", now.Add(time.Hour), Grants{Publish: true, Subscribe: true})
	mint := func(kid string, c Claims) string {
		tok, err := Mint(ks, kid, c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	otherKeys, err := ParseKeys([]byte("k1 " + strings.Repeat("x", 40)))
	if err != nil {
		t.Fatal(err)
	}
	forged, err := Mint(otherKeys, "k1", good)
	if err != nil {
		t.Fatal(err)
	}
	none := jwt.NewWithClaims(jwt.SigningMethodNone, good)
	none.Header["kid"] = "k1"
	unsigned, err := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	noExp := good
	noExp.ExpiresAt = nil
	noExpTok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, noExp).SignedString([]byte(secretA))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, token, room string
		at                time.Time
		want              error
	}{
		{"good, key one", mint("k1", good), "r1", now, nil},
		{"good, key two", mint("k2", good), "r1", now, nil},
		{"within leeway after expiry", mint("k1", good), "r1", now.Add(time.Hour + 2*time.Second), nil},
		{"missing", "", "r1", now, ErrTokenMissing},
		{"garbage", "not.a.token", "r1", now, ErrTokenInvalid},
		{"forged with another secret", forged, "r1", now, ErrTokenInvalid},
		{"alg none", unsigned, "r1", now, ErrTokenInvalid},
		{"no kid, no expiry", noExpTok, "r1", now, ErrTokenInvalid},
		{"expired", mint("k1", good), "r1", now.Add(2 * time.Hour), ErrTokenExpired},
		{"other room", mint("k1", good), "r2", now, ErrWrongRoom},
		{"any-room token does not join", mint("k1", claims(AnyRoom, "adm", now.Add(time.Hour), Grants{Admin: true})), "r1", now, ErrWrongRoom},
		{"tampered payload", tamper(t, mint("k1", good)), "r1", now, ErrTokenInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Verify(ks, tt.token, tt.room, tt.at)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if c.Identity() != "alice" || c.Name != "Alice" || !c.Grants.Publish || !c.Grants.Subscribe || c.Grants.Chat {
					t.Fatalf("claims = %+v", c)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// tamper flips the room in a token's payload, keeping its signature.
func tamper(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	c := claims("r1", "mallory", time.Unix(1_800_003_600, 0), Grants{Admin: true})
	forged, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte("whatever-secret-of-32-bytes-or-more!"))
	if err != nil {
		t.Fatal(err)
	}
	return parts[0] + "." + strings.Split(forged, ".")[1] + "." + parts[2]
}

func TestVerifyAdmin(t *testing.T) {
	ks := testKeys(t)
	now := time.Unix(1_800_000_000, 0)
	mint := func(c Claims) string {
		tok, err := Mint(ks, "k2", c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tests := []struct {
		name, token string
		want        error
	}{
		{"admin for every room", mint(claims(AnyRoom, "ops", now.Add(time.Hour), Grants{Admin: true})), nil},
		{"admin of one room", mint(claims("r1", "ops", now.Add(time.Hour), Grants{Admin: true})), ErrForbidden},
		{"not admin", mint(claims(AnyRoom, "ops", now.Add(time.Hour), Grants{Subscribe: true})), ErrForbidden},
		{"expired", mint(claims(AnyRoom, "ops", now.Add(-time.Hour), Grants{Admin: true})), ErrTokenExpired},
		{"none", "", ErrTokenMissing},
	}
	for _, tt := range tests {
		_, err := VerifyAdmin(ks, tt.token, now)
		if (tt.want == nil && err != nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestMintRefuses(t *testing.T) {
	ks := testKeys(t)
	exp := time.Now().Add(time.Hour)
	tests := []struct {
		name string
		kid  string
		c    Claims
		want error
	}{
		{"unknown kid", "k9", claims("r", "a", exp, Grants{}), ErrUnknownKey},
		{"no room", "k1", claims("", "a", exp, Grants{}), ErrBadClaims},
		{"no identity", "k1", claims("r", "", exp, Grants{}), ErrBadClaims},
		{"no expiry", "k1", Claims{Room: "r", RegisteredClaims: jwt.RegisteredClaims{Subject: "a"}}, ErrBadClaims},
		{"bad source", "k1", claims("r", "a", exp, Grants{Publish: true, Sources: []string{"tv"}}), ErrBadClaims},
	}
	for _, tt := range tests {
		if _, err := Mint(ks, tt.kid, tt.c); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
}
