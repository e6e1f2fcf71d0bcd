package sfu

import (
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Room chat.
//
// A room keeps the last Config.ChatHistory messages, ordered by the time
// the sender's node accepted them (ties by id), whoever sent them and on
// whichever node. A message is delivered to every local participant once
// (the sender included): ids already seen are ignored, so a message that
// reaches a node twice (live and in a history hand-over) is shown once.
// Messages of local participants are reported to the Observer (ChatSent),
// which carries them to the other nodes of the room; those come back in
// through Room.AddRemoteChat, in the order their node sent them.

// SendChat sends a plain-text message to the room: every participant of
// the room (this one included) gets EventChat. text must be valid UTF-8,
// not blank, at most Config.ChatMaxBytes bytes, without control characters
// other than newline and tab. Errors: ErrChatInvalid, ErrChatTooLong,
// ErrChatRateLimited (more than Config.ChatRate messages per second, bursts
// of Config.ChatBurst), ErrParticipantClosed.
func (p *Participant) SendChat(text string) (ChatMessage, error) {
	max := p.e.cfg.ChatMaxBytes
	switch {
	case len(text) > max:
		return ChatMessage{}, fmt.Errorf("%w: %d bytes, at most %d", ErrChatTooLong, len(text), max)
	case !utf8.ValidString(text):
		return ChatMessage{}, fmt.Errorf("%w: not valid UTF-8", ErrChatInvalid)
	case strings.TrimSpace(text) == "":
		return ChatMessage{}, fmt.Errorf("%w: empty message", ErrChatInvalid)
	case strings.ContainsFunc(text, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }):
		return ChatMessage{}, fmt.Errorf("%w: control characters", ErrChatInvalid)
	}
	if !p.chatLimit.Allow() {
		return ChatMessage{}, fmt.Errorf("%w: at most %v messages per second (bursts of %d)", ErrChatRateLimited,
			p.e.cfg.ChatRate, p.e.cfg.ChatBurst)
	}
	m := ChatMessage{
		ID:            newID(),
		ParticipantID: p.id,
		Name:          p.info.Name,
		Origin:        p.e.cfg.NodeID,
		Text:          text,
		At:            time.Now().Truncate(time.Millisecond),
	}
	r := p.room
	r.mu.Lock()
	if r.locals[p.id] != p {
		r.mu.Unlock()
		return ChatMessage{}, ErrParticipantClosed
	}
	over := r.addChatLocked(m)
	r.mu.Unlock()
	closeOverflowed(over)
	if o := r.e.getObserver(); o != nil {
		o.ChatSent(r, m)
	}
	return m, nil
}

// AddRemoteChat adds messages that participants of other nodes sent, in
// the order given (their node's order). Messages already seen are
// skipped; malformed ones (no id, sender or time, a text over
// Config.ChatMaxBytes) are skipped and counted in the returned number.
// Local participants get EventChat for each new message. Returns
// ErrRoomClosed if the room is gone.
func (r *Room) AddRemoteChat(msgs []ChatMessage) (bad int, err error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return 0, ErrRoomClosed
	}
	var over []*Participant
	for _, m := range msgs {
		if m.ID == "" || m.ParticipantID == "" || m.At.IsZero() || len(m.Text) > r.e.cfg.ChatMaxBytes ||
			!utf8.ValidString(m.Text) || !utf8.ValidString(m.Name) {
			bad++
			continue
		}
		over = append(over, r.addChatLocked(m)...)
	}
	r.mu.Unlock()
	closeOverflowed(over)
	return bad, nil
}

// ChatHistory returns the room's last messages, oldest first.
func (r *Room) ChatHistory() []ChatMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.chatLocked()
}

// InitialChat returns the room's chat history as it was when the
// participant joined; later messages arrive as EventChat. Use it for the
// "joined" message.
func (p *Participant) InitialChat() []ChatMessage {
	return append([]ChatMessage(nil), p.initChat...)
}

// chatLocked copies the history. Caller holds r.mu.
func (r *Room) chatLocked() []ChatMessage {
	return append([]ChatMessage(nil), r.chat.msgs...)
}

// addChatLocked records m unless seen and queues it to every local
// participant. Caller holds r.mu.
func (r *Room) addChatLocked(m ChatMessage) (overflowed []*Participant) {
	if !r.chat.add(m, r.e.cfg.ChatHistory) {
		return nil
	}
	return r.enqueueLocked(nil, action{kind: actChat, chat: &m})
}

// chatLog is a room's history and the ids it has seen.
type chatLog struct {
	msgs []ChatMessage       // sorted by At (equal times in arrival order), at most the history size
	seen map[string]struct{} // ids of recent messages
	ring []string            // seen ids in arrival order, to bound seen
}

// add inserts m in order and reports whether it was new. It remembers
// the ids of the last 4×keep messages.
func (c *chatLog) add(m ChatMessage, keep int) bool {
	if _, dup := c.seen[m.ID]; dup {
		return false
	}
	if c.seen == nil {
		c.seen = make(map[string]struct{})
	}
	c.seen[m.ID] = struct{}{}
	c.ring = append(c.ring, m.ID)
	if len(c.ring) > 4*keep {
		delete(c.seen, c.ring[0])
		c.ring = c.ring[1:]
	}
	i := sort.Search(len(c.msgs), func(i int) bool {
		o := c.msgs[i]
		return o.At.After(m.At)
	})
	c.msgs = append(c.msgs, ChatMessage{})
	copy(c.msgs[i+1:], c.msgs[i:])
	c.msgs[i] = m
	if len(c.msgs) > keep {
		c.msgs = append(c.msgs[:0], c.msgs[len(c.msgs)-keep:]...)
	}
	return true
}
