package relay

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // HMAC-SHA1 is what the TURN REST API scheme specifies
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pion/turn/v5"
)

// maxUsernameLen bounds the usernames the auth handler looks at.
const maxUsernameLen = 256

// Credential is a short-lived TURN credential of one participant (the TURN
// REST API scheme): Username is "<expiry unix seconds>:<participant id>",
// Password is base64(HMAC-SHA1(secret, Username)).
type Credential struct {
	Username string
	Password string
	Expires  time.Time
}

// NewCredential derives the credential of participantID that expires at
// expires, keyed with secret.
func NewCredential(secret []byte, participantID string, expires time.Time) Credential {
	username := strconv.FormatInt(expires.Unix(), 10) + ":" + participantID
	return Credential{Username: username, Password: password(secret, username), Expires: time.Unix(expires.Unix(), 0)}
}

// password is base64(HMAC-SHA1(secret, username)).
func password(secret []byte, username string) string {
	mac := hmac.New(sha1.New, secret)
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// checkUsername parses "<expiry>:<participant id>" and checks that it has
// not expired at now. It returns the participant id.
func checkUsername(username string, now time.Time) (string, error) {
	if len(username) > maxUsernameLen {
		return "", errBadUsername
	}
	exp, id, ok := strings.Cut(username, ":")
	if !ok || id == "" {
		return "", errBadUsername
	}
	secs, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || secs <= 0 {
		return "", errBadUsername
	}
	if now.Unix() > secs {
		return "", fmt.Errorf("%w at %s", errExpired, time.Unix(secs, 0).UTC().Format(time.RFC3339))
	}
	return id, nil
}

// authKey is the long-term credential key of username (RFC 5389 15.4):
// the TURN server checks each request's MESSAGE-INTEGRITY with it, so only
// a client holding the password derived from the secret passes.
func authKey(secret []byte, username, realm string) []byte {
	return turn.GenerateAuthKey(username, realm, password(secret, username))
}
