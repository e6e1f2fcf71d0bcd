package web

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/confab/confab/sfu"
	"github.com/confab/confab/web/access"
)

// Wire error codes sent in "error" messages (see docs/protocol.md).
const (
	codeBadMessage         = "bad-message"
	codeUnknownType        = "unknown-type"
	codeUnsupportedVersion = "unsupported-version"
	codeNotJoined          = "not-joined"
	codeAlreadyJoined      = "already-joined"
	codeInvalidName        = "invalid-name"
	codeInvalidSDP         = "invalid-sdp"
	codeRoomFull           = "room-full"
	codeTooManyRooms       = "too-many-rooms"
	codeRateLimited        = "rate-limited"
	codeDraining           = "draining"
	codeNodeFull           = "node-full"
	codeChatInvalid        = "chat-invalid"
	codeChatTooLong        = "chat-too-long"
	codeChatRateLimited    = "chat-rate-limited"
	codeTokenRequired      = "token-required"
	codeTokenInvalid       = "token-invalid"
	codeTokenExpired       = "token-expired"
	codeTokenWrongRoom     = "token-wrong-room"
	codeForbidden          = "forbidden"
	codeReplaced           = "replaced"
	codeRemoved            = "removed"
	codeRoomEnded          = "room-ended"
	codeRoomLocked         = "room-locked"
	codeInternal           = "internal"
)

// Sentinel errors of the signaling protocol. Each maps to one wire code in
// wireCode; sessions wrap them with context.
var (
	// errBadMessage: the message is not valid JSON or misses required fields.
	errBadMessage = errors.New("web: bad message")
	// errUnknownType: the message type is not part of the protocol.
	errUnknownType = errors.New("web: unknown message type")
	// errUnsupportedVersion: the message's "v" is not 1.
	errUnsupportedVersion = errors.New("web: unsupported protocol version")
	// errNotJoined: a message other than "join" arrived before a successful join.
	errNotJoined = errors.New("web: not joined")
	// errAlreadyJoined: a second "join" on the same connection.
	errAlreadyJoined = errors.New("web: already joined")
	// errInvalidName: the display name is empty, too long or has control characters.
	errInvalidName = errors.New("web: invalid display name")
	// errRateLimited: the client sent messages faster than Config.RateLimit
	// allows; the message was dropped.
	errRateLimited = errors.New("web: rate limited")
	// errDraining: the node is draining (Server.Drain) and takes no new
	// participants.
	errDraining = errors.New("web: node draining")
)

// ErrClusterFull is returned by Deps.Place when no node of the cluster can
// take another participant; the client gets the error code "node-full".
var ErrClusterFull = errors.New("web: every node is full")

// errForeignOrigin: the signaling WebSocket's Origin is neither this host,
// an allowed pattern, nor a node of the cluster. Answered with HTTP 403
// before the upgrade, so it has no wire code.
var errForeignOrigin = errors.New("web: origin not allowed")

// protocolError is a client-caused error: kind is one of the sentinels
// above (it selects the wire code), detail is the text sent to the client.
type protocolError struct {
	kind   error
	detail string
}

func (e *protocolError) Error() string { return e.detail }
func (e *protocolError) Unwrap() error { return e.kind }

// protoErrorf returns a *protocolError of the given kind.
func protoErrorf(kind error, format string, args ...any) error {
	return &protocolError{kind: kind, detail: fmt.Sprintf(format, args...)}
}

// wireCode maps an error to its wire code. It is the ONLY place where
// errors (ours and sfu's) are translated to the protocol; anything
// unrecognised is "internal".
func wireCode(err error) string {
	switch {
	case errors.Is(err, errBadMessage):
		return codeBadMessage
	case errors.Is(err, errUnknownType):
		return codeUnknownType
	case errors.Is(err, errUnsupportedVersion):
		return codeUnsupportedVersion
	case errors.Is(err, errNotJoined):
		return codeNotJoined
	case errors.Is(err, errAlreadyJoined):
		return codeAlreadyJoined
	case errors.Is(err, errInvalidName):
		return codeInvalidName
	case errors.Is(err, errRateLimited):
		return codeRateLimited
	case errors.Is(err, errDraining):
		return codeDraining
	case errors.Is(err, ErrClusterFull):
		return codeNodeFull
	case errors.Is(err, sfu.ErrInvalidSDP):
		return codeInvalidSDP
	case errors.Is(err, sfu.ErrChatInvalid):
		return codeChatInvalid
	case errors.Is(err, sfu.ErrChatTooLong):
		return codeChatTooLong
	case errors.Is(err, sfu.ErrChatRateLimited):
		return codeChatRateLimited
	case errors.Is(err, access.ErrTokenMissing):
		return codeTokenRequired
	case errors.Is(err, access.ErrTokenInvalid):
		return codeTokenInvalid
	case errors.Is(err, access.ErrTokenExpired):
		return codeTokenExpired
	case errors.Is(err, access.ErrWrongRoom):
		return codeTokenWrongRoom
	case errors.Is(err, access.ErrForbidden):
		return codeForbidden
	case errors.Is(err, sfu.ErrReplaced):
		return codeReplaced
	case errors.Is(err, sfu.ErrRemoved):
		return codeRemoved
	case errors.Is(err, sfu.ErrRoomEnded):
		return codeRoomEnded
	case errors.Is(err, sfu.ErrRoomLocked):
		return codeRoomLocked
	case errors.Is(err, sfu.ErrRoomFull):
		return codeRoomFull
	case errors.Is(err, sfu.ErrTooManyRooms):
		return codeTooManyRooms
	case errors.Is(err, sfu.ErrWrongState), errors.Is(err, sfu.ErrInvalidArgument):
		// The client asked for something the negotiation state does not
		// allow (e.g. an answer without an outstanding offer): its fault.
		return codeBadMessage
	default:
		return codeInternal
	}
}

// chatError turns a refused chat message into the error reported to the
// client, keeping its sfu sentinel (hence its wire code).
func chatError(err error) error {
	for _, kind := range []error{sfu.ErrChatTooLong, sfu.ErrChatRateLimited, sfu.ErrChatInvalid} {
		if errors.Is(err, kind) {
			detail := strings.TrimPrefix(err.Error(), kind.Error()+": ")
			return protoErrorf(kind, "chat: message not sent: %s", detail)
		}
	}
	return fmt.Errorf("chat: %w", err)
}

// joinError turns an Engine.Join failure into the error reported to the
// client: the room and node limits get a plain explanation (keeping their
// sfu sentinel, hence their wire code); anything else is wrapped as is.
func joinError(room, nodeID string, err error) error {
	switch {
	case errors.Is(err, sfu.ErrRoomFull):
		return protoErrorf(sfu.ErrRoomFull, "room %q is full: it has reached the participant limit of node %s", room, nodeID)
	case errors.Is(err, sfu.ErrTooManyRooms):
		return protoErrorf(sfu.ErrTooManyRooms, "node %s cannot open room %q: it already hosts as many rooms as it may", nodeID, room)
	case errors.Is(err, sfu.ErrRoomLocked):
		return protoErrorf(sfu.ErrRoomLocked, "room %q is locked: an admin has to unlock it before anyone else can join", room)
	case errors.Is(err, sfu.ErrRoomEnded):
		return protoErrorf(sfu.ErrRoomEnded, "the meeting in room %q was ended by an admin", room)
	}
	return fmt.Errorf("join room %s: %w", room, err)
}

// accessStatus is the HTTP status of an access error (pages and the
// cluster API): 401 when the caller must bring a (new) token, 403 when its
// token does not allow it.
func accessStatus(err error) int {
	switch {
	case errors.Is(err, access.ErrWrongRoom), errors.Is(err, access.ErrForbidden):
		return http.StatusForbidden
	default:
		return http.StatusUnauthorized
	}
}

// accessError wraps an access.Verify error for the client: its sentinel
// (hence its wire code) with a plain explanation and the detail.
func accessError(err error) error {
	for _, kind := range []error{access.ErrTokenMissing, access.ErrTokenExpired, access.ErrWrongRoom, access.ErrForbidden, access.ErrTokenInvalid} {
		if errors.Is(err, kind) {
			return &protocolError{kind: kind, detail: accessText(err) + " (" + err.Error() + ")"}
		}
	}
	return &protocolError{kind: access.ErrTokenInvalid, detail: accessText(err)}
}

// accessText is what a person is told about an access error.
func accessText(err error) string {
	switch wireCode(err) {
	case codeTokenRequired:
		return "This room needs an access token: open the link you were given."
	case codeTokenExpired:
		return "Your access token has expired: ask for a new link."
	case codeTokenWrongRoom:
		return "Your access token is for another room."
	case codeForbidden:
		return "Your access token does not allow this."
	default:
		return "Your access token is not valid."
	}
}

// endText explains to a client why the engine ended its participant.
func endText(code string, err error) string {
	switch code {
	case codeReplaced:
		return "You joined this room again from another tab or device; this session has ended."
	case codeRemoved:
		return "An admin removed you from the room."
	case codeRoomEnded:
		return "An admin ended the meeting for everyone."
	}
	return err.Error()
}

// clientMessage is the human-readable text sent with an error code. For
// client-caused errors it is the error text; internal errors are not
// described to the client (they are logged instead).
func clientMessage(code string, err error) string {
	if code == codeInternal {
		return "internal server error"
	}
	return err.Error()
}

// Errors of the WHIP and WHEP endpoints (whip.go).
var (
	// errMediaType: the request body is not of the required content type.
	errMediaType = errors.New("web: unsupported media type")
	// errNoResource: no WHIP or WHEP session has that resource URL.
	errNoResource = errors.New("web: no such WHIP or WHEP session")
	// errStaleICE: a PATCH carries the ICE credentials of an earlier ICE
	// session of the resource (a late trickle or restart request).
	errStaleICE = errors.New("web: ICE credentials of an earlier ICE session")
	// errETag: a PATCH's If-Match names another version of the session.
	errETag = errors.New("web: ETag does not match")
)

// httpStatus is the HTTP status of an error of the WHIP and WHEP
// endpoints: the access errors as on pages (accessStatus), 400 for a
// malformed request, 403 for a room an admin locked or ended, 503 when
// this node cannot take the session now.
func httpStatus(err error) int {
	switch {
	case errors.Is(err, access.ErrTokenMissing), errors.Is(err, access.ErrTokenInvalid),
		errors.Is(err, access.ErrTokenExpired), errors.Is(err, access.ErrWrongRoom), errors.Is(err, access.ErrForbidden):
		return accessStatus(err)
	case errors.Is(err, sfu.ErrInvalidSDP), errors.Is(err, errBadMessage), errors.Is(err, errInvalidName),
		errors.Is(err, sfu.ErrInvalidArgument):
		return http.StatusBadRequest
	case errors.Is(err, errMediaType):
		return http.StatusUnsupportedMediaType
	case errors.Is(err, errNoResource):
		return http.StatusNotFound
	case errors.Is(err, errStaleICE):
		return http.StatusConflict
	case errors.Is(err, errETag):
		return http.StatusPreconditionFailed
	case errors.Is(err, sfu.ErrRoomLocked), errors.Is(err, sfu.ErrRoomEnded):
		return http.StatusForbidden
	case errors.Is(err, errDraining), errors.Is(err, sfu.ErrRoomFull), errors.Is(err, sfu.ErrTooManyRooms),
		errors.Is(err, sfu.ErrEngineClosed):
		return http.StatusServiceUnavailable
	case errors.Is(err, sfu.ErrWrongState), errors.Is(err, sfu.ErrParticipantClosed):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

// mediaCode is the "error" code of a WHIP or WHEP error response: the
// wire code (wireCode) where the signaling protocol has one, else one of
// the endpoints' own.
func mediaCode(err error) string {
	switch {
	case errors.Is(err, errMediaType):
		return "unsupported-media-type"
	case errors.Is(err, errNoResource):
		return "not-found"
	case errors.Is(err, errStaleICE):
		return "stale-ice-session"
	case errors.Is(err, errETag):
		return "etag-mismatch"
	}
	return wireCode(err)
}
