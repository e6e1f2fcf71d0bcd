package pipe

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Control channel authentication headers (see the protocol summary in
// control.go). Requests carry all six; every response (errors included)
// carries Node, Timestamp, Body-SHA256 and Signature.
const (
	HeaderNode      = "X-Confab-Node"        // sender node id
	HeaderTo        = "X-Confab-To"          // recipient node id (requests)
	HeaderTimestamp = "X-Confab-Timestamp"   // sender clock, unix milliseconds, decimal
	HeaderNonce     = "X-Confab-Nonce"       // 32 lowercase hex digits, random per request
	HeaderBodyHash  = "X-Confab-Body-Sha256" // lowercase hex SHA-256 of the body
	HeaderSignature = "X-Confab-Signature"   // lowercase hex HMAC-SHA256, see canonicalRequest
)

// authVersion starts every signed request string: a string signed for an
// older wire version can never verify as a request of this one.
const authVersion = "CONFAB-CONTROL-2"

// maxReplayEntries bounds the replay cache. Legitimate traffic is a few
// requests per negotiation, so this is far above need; when it is full
// (after pruning expired entries) requests get 503 rather than the node
// forgetting signatures it must still refuse.
const maxReplayEntries = 65536

// nonceBytes is the size of a request nonce before hex encoding.
const nonceBytes = 16

// mac is a decoded HMAC-SHA256 value, the key of the replay cache.
type mac [sha256.Size]byte

// sha256Hex returns the lowercase hex SHA-256 of b.
func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// canonicalHex reports whether s is exactly n bytes in lowercase hex (the
// only spelling accepted for signatures, nonces and body hashes, so that a
// value has one wire form).
func canonicalHex(s string, n int) bool {
	if len(s) != 2*n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// canonicalRequest is the string a request signature covers:
//
//	"CONFAB-CONTROL-2" "\n" METHOD "\n" escaped-path "\n" sender "\n" recipient "\n"
//	timestamp "\n" nonce "\n" hex(sha256(body))
//
// The timestamp, nonce and body hash are the exact header texts. The
// recipient makes a request useless at any other node; the body hash lets
// the receiver check the MAC from the headers alone, before it reads the
// body, and then the body against the hash.
func canonicalRequest(method, path, from, to, ts, nonce, bodyHash string) string {
	return authVersion + "\n" + method + "\n" + path + "\n" + from + "\n" + to + "\n" + ts + "\n" + nonce + "\n" + bodyHash
}

// canonicalResponse is the string a response signature covers:
//
//	"RESPONSE" "\n" status "\n" request-signature "\n" responder-node "\n" timestamp "\n" hex(sha256(body))
//
// Binding the request signature (which covers recipient and nonce) makes a
// response valid for exactly one request (no replay of old answers); the
// "RESPONSE" prefix can never start a request string, so responses cannot
// be used as request signatures.
func canonicalResponse(status int, reqSig, node, ts, bodyHash string) string {
	return "RESPONSE\n" + strconv.Itoa(status) + "\n" + reqSig + "\n" + node + "\n" + ts + "\n" + bodyHash
}

// signString returns hex(HMAC-SHA256(secret, s)).
func signString(secret []byte, s string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(s)) // hash.Hash.Write never fails
	return hex.EncodeToString(m.Sum(nil))
}

// newNonce returns a fresh random request nonce.
func newNonce() string {
	var b [nonceBytes]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// signRequest sets the auth headers on req, from node to node to, for body
// (which must be the exact bytes sent) and returns the signature.
func signRequest(secret []byte, req *http.Request, from, to string, body []byte, now time.Time) string {
	ts := strconv.FormatInt(now.UnixMilli(), 10)
	nonce := newNonce()
	bh := sha256Hex(body)
	sig := signString(secret, canonicalRequest(req.Method, req.URL.EscapedPath(), from, to, ts, nonce, bh))
	req.Header.Set(HeaderNode, from)
	req.Header.Set(HeaderTo, to)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderNonce, nonce)
	req.Header.Set(HeaderBodyHash, bh)
	req.Header.Set(HeaderSignature, sig)
	return sig
}

// signResponse sets the auth headers of a response to the request signed
// with reqSig.
func signResponse(secret []byte, h http.Header, status int, reqSig, node string, body []byte, now time.Time) {
	ts := strconv.FormatInt(now.UnixMilli(), 10)
	bh := sha256Hex(body)
	h.Set(HeaderNode, node)
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderBodyHash, bh)
	h.Set(HeaderSignature, signString(secret, canonicalResponse(status, reqSig, node, ts, bh)))
}

// checkSignature compares the hex signature got with the expected HMAC of
// canonical in constant time and returns the decoded MAC. Only canonical
// (lowercase, full length) hex is accepted.
func checkSignature(secret []byte, canonical, got string) (mac, bool) {
	var m mac
	if !canonicalHex(got, len(m)) {
		return m, false
	}
	if _, err := hex.Decode(m[:], []byte(got)); err != nil {
		return m, false
	}
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(canonical))
	return m, hmac.Equal(m[:], h.Sum(nil))
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

// verifyResponse checks the signature of a control response (any status)
// from node to the request signed with reqSig.
func verifyResponse(secret []byte, h http.Header, status int, reqSig, node string, body []byte, now time.Time, maxSkew time.Duration) error {
	if got := h.Get(HeaderNode); got != node {
		return fmt.Errorf("%w: response from node %q, expected %q", ErrControlBadResponse, got, node)
	}
	ts := h.Get(HeaderTimestamp)
	if _, err := checkTimestamp(ts, now, maxSkew); err != nil {
		return fmt.Errorf("%w: %v", ErrControlBadResponse, err)
	}
	bh := sha256Hex(body)
	if h.Get(HeaderBodyHash) != bh {
		return fmt.Errorf("%w: response body does not match its hash", ErrControlBadResponse)
	}
	if _, ok := checkSignature(secret, canonicalResponse(status, reqSig, node, ts, bh), h.Get(HeaderSignature)); !ok {
		return fmt.Errorf("%w: bad response signature", ErrControlBadResponse)
	}
	return nil
}

// signedHeaders is a request whose headers verified: what the receiver
// still has to check once it read the body.
type signedHeaders struct {
	node     string    // authenticated sender
	sig      string    // request signature (canonical hex)
	mac      mac       // decoded signature, the replay cache key
	bodyHash string    // declared body hash
	at       time.Time // request timestamp
}

// verifier authenticates incoming control requests and remembers the
// signatures it accepted so that a captured request cannot be replayed.
//
// A signature only needs remembering while its timestamp is still within
// maxSkew of the clock, so entries expire at ts+maxSkew and are pruned
// lazily; the map never exceeds maxEntries. Entries are keyed by the
// decoded MAC. Safe for concurrent use; mu guards seen and lastPrune.
type verifier struct {
	secret     []byte
	self       string                 // this node's id: the only accepted recipient
	known      func(node string) bool // the directory: senders answered at all
	maxSkew    time.Duration
	maxEntries int
	now        func() time.Time

	mu        sync.Mutex
	seen      map[mac]time.Time // signature -> expiry
	lastPrune time.Time
}

// newVerifier returns a verifier for requests addressed to self, from the
// nodes for which known is true.
func newVerifier(secret []byte, self string, known func(string) bool, maxSkew time.Duration, now func() time.Time) *verifier {
	return &verifier{
		secret:     secret,
		self:       self,
		known:      known,
		maxSkew:    maxSkew,
		maxEntries: maxReplayEntries,
		now:        now,
		seen:       make(map[mac]time.Time),
	}
}

// verifyHeaders authenticates r from its headers alone, before any of its
// body is read: recipient, sender in the directory, timestamp, declared
// Content-Length (at most maxBody), then the MAC over the headers and the
// declared body hash. Errors wrap ErrControlUnauthorized (401),
// ErrControlForbidden (403: another recipient, a sender not in the
// directory) or ErrControlTooLarge (413: no or an oversized length).
func (v *verifier) verifyHeaders(r *http.Request, maxBody int64) (signedHeaders, error) {
	node := r.Header.Get(HeaderNode)
	to := r.Header.Get(HeaderTo)
	ts := r.Header.Get(HeaderTimestamp)
	nonce := r.Header.Get(HeaderNonce)
	bh := r.Header.Get(HeaderBodyHash)
	sig := r.Header.Get(HeaderSignature)
	if node == "" || to == "" || ts == "" || nonce == "" || bh == "" || sig == "" {
		return signedHeaders{}, fmt.Errorf("%w: missing one of %s, %s, %s, %s, %s, %s", ErrControlUnauthorized,
			HeaderNode, HeaderTo, HeaderTimestamp, HeaderNonce, HeaderBodyHash, HeaderSignature)
	}
	if to != v.self {
		return signedHeaders{}, fmt.Errorf("%w: request addressed to node %q", ErrControlForbidden, to)
	}
	if node == v.self || !v.known(node) {
		return signedHeaders{}, fmt.Errorf("%w: node %q is not in this node's directory", ErrControlForbidden, node)
	}
	now := v.now()
	t, err := checkTimestamp(ts, now, v.maxSkew)
	if err != nil {
		return signedHeaders{}, err
	}
	if r.ContentLength < 0 || r.ContentLength > maxBody {
		return signedHeaders{}, fmt.Errorf("%w: Content-Length %d (limit %d bytes, must be declared)", ErrControlTooLarge, r.ContentLength, maxBody)
	}
	if !canonicalHex(nonce, nonceBytes) || !canonicalHex(bh, sha256.Size) {
		return signedHeaders{}, fmt.Errorf("%w: malformed nonce or body hash", ErrControlUnauthorized)
	}
	m, ok := checkSignature(v.secret, canonicalRequest(r.Method, r.URL.EscapedPath(), node, to, ts, nonce, bh), sig)
	if !ok {
		return signedHeaders{}, fmt.Errorf("%w: bad signature", ErrControlUnauthorized)
	}
	return signedHeaders{node: node, sig: sig, mac: m, bodyHash: bh, at: t}, nil
}

// accept checks body against the verified headers and records the request
// as seen. It returns ErrControlUnauthorized for a body that does not
// match its hash or a replayed request, ErrControlUnavailable (503) when
// the replay cache is full. A request is only recorded when every other
// check passed, so garbage cannot fill the cache.
func (v *verifier) accept(h signedHeaders, body []byte) error {
	if sha256Hex(body) != h.bodyHash {
		return fmt.Errorf("%w: body does not match its signed hash", ErrControlUnauthorized)
	}
	now := v.now()
	v.mu.Lock()
	defer v.mu.Unlock()
	if exp, ok := v.seen[h.mac]; ok && !now.After(exp) {
		return fmt.Errorf("%w: replayed request", ErrControlUnauthorized)
	}
	if len(v.seen) >= v.maxEntries || now.Sub(v.lastPrune) > v.maxSkew/4 {
		v.pruneLocked(now)
	}
	if len(v.seen) >= v.maxEntries {
		return fmt.Errorf("%w: replay cache full", ErrControlUnavailable)
	}
	v.seen[h.mac] = h.at.Add(v.maxSkew)
	return nil
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
