package sfu

import "errors"

// Sentinel errors returned (wrapped) by the sfu package. Test with errors.Is.
var (
	// ErrRoomFull is returned by Engine.Join when the room already holds
	// Config.MaxParticipantsPerRoom local participants.
	ErrRoomFull = errors.New("sfu: room full")
	// ErrReplaced ends a participant whose identity joined the room again
	// (JoinParams.Identity).
	ErrReplaced = errors.New("sfu: replaced by a new session of the same identity")
	// ErrRemoved ends a participant an admin removed (ModRemove).
	ErrRemoved = errors.New("sfu: removed by an admin")
	// ErrRoomEnded ends every participant of a room an admin ended
	// (ModEnd); Join refuses the room with it for Config.EndedRoomHold.
	ErrRoomEnded = errors.New("sfu: room ended by an admin")
	// ErrRoomLocked is returned by Engine.Join for a locked room (ModLock)
	// unless JoinParams.Admin.
	ErrRoomLocked = errors.New("sfu: room locked")
	// ErrTooManyRooms is returned by Engine.Join when creating the room would
	// exceed Config.MaxRooms.
	ErrTooManyRooms = errors.New("sfu: too many rooms")
	// ErrRoomClosed is returned when operating on a room that has been removed
	// (its last local participant left or the engine closed).
	ErrRoomClosed = errors.New("sfu: room closed")
	// ErrParticipantClosed is returned by Participant methods after Close.
	ErrParticipantClosed = errors.New("sfu: participant closed")
	// ErrInvalidSDP wraps every error caused by a malformed or unusable session
	// description (parse failure, wrong type, rejected by the peer connection).
	ErrInvalidSDP = errors.New("sfu: invalid sdp")
	// ErrDuplicateProducer is returned by Room.AddProducer when the producer ID
	// is already present in the room.
	ErrDuplicateProducer = errors.New("sfu: duplicate producer")
	// ErrWrongState is returned when a call is not valid in the current
	// negotiation state (e.g. a subscriber answer without an outstanding offer,
	// concurrent Publish calls, a candidate for a peer connection that does not
	// exist yet).
	ErrWrongState = errors.New("sfu: wrong state")
	// ErrEngineClosed is returned by Engine methods after Close, and set as
	// Event.Err on the EventClosed sent to participants closed by Engine.Close.
	ErrEngineClosed = errors.New("sfu: engine closed")

	// ErrInvalidArgument is returned for invalid parameters (nil EventHandler,
	// incomplete ProducerInfo, nil peer connection, ...). Addition to the spec.
	ErrInvalidArgument = errors.New("sfu: invalid argument")
	// ErrProducerClosed is returned by Producer.WriteRTP and
	// Producer.NewConsumer after the producer was closed. Addition to the spec.
	ErrProducerClosed = errors.New("sfu: producer closed")
	// ErrConnectionFailed is set as Event.Err on the EventClosed sent when a
	// participant's peer connection failed or was closed by the peer.
	// Addition to the spec.
	ErrConnectionFailed = errors.New("sfu: peer connection failed")
	// ErrQueueOverflow is set as Event.Err on the EventClosed sent to a
	// participant closed because it fell too far behind the room's changes
	// (its event queue overflowed). Addition to the spec.
	ErrQueueOverflow = errors.New("sfu: participant event queue overflow")
	// ErrChatInvalid is returned by Participant.SendChat for a blank
	// message, invalid UTF-8 or control characters.
	ErrChatInvalid = errors.New("sfu: invalid chat message")
	// ErrChatTooLong is returned by Participant.SendChat for a message
	// over Config.ChatMaxBytes.
	ErrChatTooLong = errors.New("sfu: chat message too long")
	// ErrChatRateLimited is returned by Participant.SendChat when the
	// participant sends faster than Config.ChatRate allows.
	ErrChatRateLimited = errors.New("sfu: chat rate limited")
)

// errBadRED: a RED payload whose block headers do not fit it (the packet
// is not forwarded to subscribers that get the primary block as Opus).
var errBadRED = errors.New("sfu: malformed RED payload")

// Errors of the fast write path (fastwrite.go), returned to pion's
// interceptor chain (the fan-out ignores per-subscriber write errors).
var (
	// errFastWriteTooLarge: the packet does not fit a datagram.
	errFastWriteTooLarge = errors.New("sfu: fast write: packet too large")
	// errFastWriteUnsupported: the handshake's parameters are not
	// supported by the fast path (pion's path is used).
	errFastWriteUnsupported = errors.New("sfu: fast write: not supported")
	// errFastWriteDropped: a fast stream cannot go over to pion's SRTP
	// session (a sequence number wrapped), so its packet was dropped.
	errFastWriteDropped = errors.New("sfu: fast write: packet dropped after the pair left the engine's UDP socket")
)
