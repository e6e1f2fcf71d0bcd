package load

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"
)

// Signaling protocol v1 (docs/protocol.md): the message types and fields
// this client uses.
const (
	protocolVersion = 1

	msgJoin             = "join"
	msgJoined           = "joined"
	msgPublish          = "publish"
	msgPublishAnswer    = "publish-answer"
	msgSubscriberOffer  = "subscriber-offer"
	msgSubscriberAnswer = "subscriber-answer"
	msgCandidate        = "candidate"
	msgLeave            = "leave"
	msgError            = "error"
	msgMove             = "move"

	targetPublisher  = "publisher"
	targetSubscriber = "subscriber"
)

// wireSDP is a session description on the wire.
type wireSDP struct {
	Type string `json:"type"`
	SDP  string `json:"sdp"`
}

// message is every field of every message this client sends or reads.
type message struct {
	V             int                      `json:"v"`
	Type          string                   `json:"type"`
	Name          string                   `json:"name,omitempty"`
	SDP           *wireSDP                 `json:"sdp,omitempty"`
	Target        string                   `json:"target,omitempty"`
	Candidate     *webrtc.ICECandidateInit `json:"candidate,omitempty"`
	ParticipantID string                   `json:"participantId,omitempty"`
	NodeID        string                   `json:"nodeId,omitempty"`
	Code          string                   `json:"code,omitempty"`
	Message       string                   `json:"message,omitempty"`
	Reason        string                   `json:"reason,omitempty"`
}

// maxMessageBytes bounds what the client reads from the server (SDPs of a
// big room are a few tens of KiB).
const maxMessageBytes = 4 << 20

// wsURL returns the signaling WebSocket URL of room on the node at base
// (http://host:port or https://host:port, optionally with a path prefix).
func wsURL(base, room string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("load: node url %q: %w", base, err)
	}
	switch u.Scheme {
	case "http", "ws":
		u.Scheme = "ws"
	case "https", "wss":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("load: node url %q: scheme must be http or https", base)
	}
	if u.Host == "" {
		return "", fmt.Errorf("load: node url %q has no host", base)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/rooms/" + url.PathEscape(room) + "/ws"
	u.RawQuery, u.Fragment = "", ""
	return u.String(), nil
}

// wsConn is one signaling WebSocket. Writes may come from any goroutine;
// reads only from the client's reader goroutine.
type wsConn struct {
	c *websocket.Conn
}

// dialWS opens the signaling WebSocket of room on the node at base.
func dialWS(ctx context.Context, base, room string) (*wsConn, error) {
	u, err := wsURL(base, room)
	if err != nil {
		return nil, err
	}
	c, _, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		return nil, fmt.Errorf("load: dial %s: %w", u, err)
	}
	c.SetReadLimit(maxMessageBytes)
	return &wsConn{c: c}, nil
}

// writeTimeout bounds one message write.
const writeTimeout = 5 * time.Second

// send writes m (with the protocol version set).
func (w *wsConn) send(ctx context.Context, m message) error {
	m.V = protocolVersion
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("load: encode %s: %w", m.Type, err)
	}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	if err := w.c.Write(ctx, websocket.MessageText, b); err != nil {
		return fmt.Errorf("load: send %s: %w", m.Type, err)
	}
	return nil
}

// read returns the next message.
func (w *wsConn) read(ctx context.Context) (message, error) {
	typ, b, err := w.c.Read(ctx)
	if err != nil {
		return message{}, err
	}
	var m message
	if typ != websocket.MessageText {
		return m, errors.New("load: server sent a binary frame")
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("load: undecodable server message: %w", err)
	}
	return m, nil
}

// closeNow drops the connection without a close handshake.
func (w *wsConn) closeNow() { _ = w.c.CloseNow() }

// normalClosure reports whether err is the server closing the socket with
// 1000 (after our leave).
func normalClosure(err error) bool {
	return websocket.CloseStatus(err) == websocket.StatusNormalClosure
}
