package pipe

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Control channel authentication headers (see the protocol summary in
// control.go). Requests and 2xx responses carry all three.
const (
	HeaderNode      = "X-Confab-Node"      // sender node id
	HeaderTimestamp = "X-Confab-Timestamp" // sender clock, unix milliseconds, decimal
	HeaderSignature = "X-Confab-Signature" // lowercase hex HMAC-SHA256, see canonicalRequest
)

// maxReplayEntries bounds the replay cache. Legitimate traffic is a few
// requests per negotiation, so this is far above need; when it is full
// (after pruning expired entries) requests get 503 rather than the node
// forgetting signatures it must still refuse.
const maxReplayEntries = 65536

// sha256Hex returns the lowercase hex SHA-256 of b.
func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// canonicalRequest is the string a request signature covers:
//
//	METHOD "\n" escaped-path "\n" sender-node "\n" timestamp "\n" hex(sha256(body))
//
// The timestamp is the exact header text.
func canonicalRequest(method, path, node, ts string, body []byte) string {
	return method + "\n" + path + "\n" + node + "\n" + ts + "\n" + sha256Hex(body)
}

// canonicalResponse is the string a response signature covers:
//
//	"RESPONSE" "\n" status "\n" request-signature "\n" responder-node "\n" timestamp "\n" hex(sha256(body))
//
// Binding the request signature makes a response valid for exactly one
// request (no replay of old answers); the "RESPONSE" prefix can never be a
// request method the server routes, so responses cannot be used as
// request signatures.
func canonicalResponse(status int, reqSig, node, ts string, body []byte) string {
	return "RESPONSE\n" + strconv.Itoa(status) + "\n" + reqSig + "\n" + node + "\n" + ts + "\n" + sha256Hex(body)
}

// signString returns hex(HMAC-SHA256(secret, s)).
func signString(secret []byte, s string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(s)) // hash.Hash.Write never fails
	return hex.EncodeToString(m.Sum(nil))
}

// signRequest sets the three auth headers on req for body (which must be the
// exact bytes sent) and returns the signature.
func signRequest(secret []byte, req *http.Request, node string, body []byte, now time.Time) string {
	ts := strconv.FormatInt(now.UnixMilli(), 10)
	sig := signString(secret, canonicalRequest(req.Method, req.URL.EscapedPath(), node, ts, body))
	req.Header.Set(HeaderNode, node)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, sig)
	return sig
}

// signResponse sets the auth headers of a response to the request signed
// with reqSig.
func signResponse(secret []byte, h http.Header, status int, reqSig, node string, body []byte, now time.Time) {
	ts := strconv.FormatInt(now.UnixMilli(), 10)
	h.Set(HeaderNode, node)
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderSignature, signString(secret, canonicalResponse(status, reqSig, node, ts, body)))
}

// checkSignature compares the hex signature got with the expected HMAC of
// canonical in constant time.
func checkSignature(secret []byte, canonical, got string) bool {
	gotRaw, err := hex.DecodeString(got)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(canonical))
	return hmac.Equal(gotRaw, m.Sum(nil))
}

// checkTimestamp parses a timestamp header and checks it is within maxSkew
// of now.
func checkTimestamp(ts string, now time.Time, maxSkew time.Duration) (time.Time, error) {
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || ms <= 0 {
		return time.Time{}, fmt.Errorf("%w: malformed timestamp", ErrControlUnauthorized)
	}
	t := time.UnixMilli(ms)
	d := now.Sub(t)
	if d > maxSkew || d < -maxSkew {
		return time.Time{}, fmt.Errorf("%w: timestamp outside the allowed clock skew", ErrControlUnauthorized)
	}
	return t, nil
}

// verifyResponse checks the signature of a 2xx control response from node
// to the request signed with reqSig.
func verifyResponse(secret []byte, h http.Header, status int, reqSig, node string, body []byte, now time.Time, maxSkew time.Duration) error {
	if got := h.Get(HeaderNode); got != node {
		return fmt.Errorf("%w: response from node %q, expected %q", ErrControlBadResponse, got, node)
	}
	ts := h.Get(HeaderTimestamp)
	if _, err := checkTimestamp(ts, now, maxSkew); err != nil {
		return fmt.Errorf("%w: %v", ErrControlBadResponse, err)
	}
	if !checkSignature(secret, canonicalResponse(status, reqSig, node, ts, body), h.Get(HeaderSignature)) {
		return fmt.Errorf("%w: bad response signature", ErrControlBadResponse)
	}
	return nil
}

// verifier authenticates incoming control requests and remembers the
// signatures it accepted so that a captured request cannot be replayed.
//
// A signature only needs remembering while its timestamp is still within
// maxSkew of the clock, so entries expire at ts+maxSkew and are pruned
// lazily; the map never exceeds maxEntries. Safe for concurrent use; mu
// guards seen and lastPrune.
type verifier struct {
	secret     []byte
	maxSkew    time.Duration
	maxEntries int
	now        func() time.Time

	mu        sync.Mutex
	seen      map[string]time.Time // signature -> expiry
	lastPrune time.Time
}

// newVerifier returns a verifier for secret.
func newVerifier(secret []byte, maxSkew time.Duration, now func() time.Time) *verifier {
	return &verifier{
		secret:     secret,
		maxSkew:    maxSkew,
		maxEntries: maxReplayEntries,
		now:        now,
		seen:       make(map[string]time.Time),
	}
}

// verify authenticates r whose body was read into body. It returns the
// sender node id and the request signature. Errors wrap
// ErrControlUnauthorized (401), or ErrControlUnavailable (503) when the
// replay cache is full. A request is only recorded as seen when every other
// check passed, so garbage cannot fill the cache.
func (v *verifier) verify(r *http.Request, body []byte) (node, sig string, err error) {
	node = r.Header.Get(HeaderNode)
	ts := r.Header.Get(HeaderTimestamp)
	sig = r.Header.Get(HeaderSignature)
	if node == "" || ts == "" || sig == "" {
		return "", "", fmt.Errorf("%w: missing %s, %s or %s", ErrControlUnauthorized, HeaderNode, HeaderTimestamp, HeaderSignature)
	}
	now := v.now()
	t, err := checkTimestamp(ts, now, v.maxSkew)
	if err != nil {
		return "", "", err
	}
	if !checkSignature(v.secret, canonicalRequest(r.Method, r.URL.EscapedPath(), node, ts, body), sig) {
		return "", "", fmt.Errorf("%w: bad signature", ErrControlUnauthorized)
	}

	v.mu.Lock()
	defer v.mu.Unlock()
	if exp, ok := v.seen[sig]; ok && !now.After(exp) {
		return "", "", fmt.Errorf("%w: replayed request", ErrControlUnauthorized)
	}
	if len(v.seen) >= v.maxEntries || now.Sub(v.lastPrune) > v.maxSkew/4 {
		v.pruneLocked(now)
	}
	if len(v.seen) >= v.maxEntries {
		return "", "", fmt.Errorf("%w: replay cache full", ErrControlUnavailable)
	}
	v.seen[sig] = t.Add(v.maxSkew)
	return node, sig, nil
}

// pruneLocked drops expired signatures. Caller holds v.mu.
func (v *verifier) pruneLocked(now time.Time) {
	for s, exp := range v.seen {
		if now.After(exp) {
			delete(v.seen, s)
		}
	}
	v.lastPrune = now
}

// size returns the number of remembered signatures (tests, status).
func (v *verifier) size() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.seen)
}
