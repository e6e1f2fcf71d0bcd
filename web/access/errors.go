package access

import "errors"

// Errors of Verify. Each is wrapped with detail; package web maps them to
// wire codes and HTTP statuses.
var (
	// ErrTokenMissing: no token was given where one is required.
	ErrTokenMissing = errors.New("access: token required")
	// ErrTokenInvalid: the token is malformed, signed with an unknown key
	// id or has a bad signature or claims.
	ErrTokenInvalid = errors.New("access: invalid token")
	// ErrTokenExpired: the token's expiry has passed (or it is not valid
	// yet).
	ErrTokenExpired = errors.New("access: token expired")
	// ErrWrongRoom: the token is for another room.
	ErrWrongRoom = errors.New("access: token is for another room")
	// ErrForbidden: the token lacks the grant an action needs.
	ErrForbidden = errors.New("access: not allowed by the token")
)

// Errors of ParseKeys and Mint.
var (
	// ErrBadKeys: the API keys file is malformed (see ParseKeys).
	ErrBadKeys = errors.New("access: bad API keys")
	// ErrUnknownKey: Mint was asked for a key id the key set lacks.
	ErrUnknownKey = errors.New("access: unknown key id")
	// ErrBadClaims: Mint was given claims it cannot sign (no room, no
	// identity, no expiry, unknown source).
	ErrBadClaims = errors.New("access: bad claims")
)
