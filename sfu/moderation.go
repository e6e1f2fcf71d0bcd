package sfu

import (
	"fmt"
	"slices"
	"time"
)

// Moderation actions (Moderation.Action).
const (
	// ModRemove ends the participant Target (ErrRemoved).
	ModRemove = "remove"
	// ModMute asks the participant Target to turn off its microphone
	// (Kind "audio") or camera ("video"); its announced state says so at
	// once.
	ModMute = "mute"
	// ModLock refuses new joins (ErrRoomLocked) except admins'.
	ModLock = "lock"
	// ModUnlock undoes ModLock.
	ModUnlock = "unlock"
	// ModEnd ends every participant of the room (ErrRoomEnded) and
	// refuses joins for Config.EndedRoomHold.
	ModEnd = "end"
)

// maxModSeen bounds the moderation ids a room remembers.
const maxModSeen = 64

// Moderation is an admin's action on a room. Participant.Moderate fills ID,
// By and Origin.
type Moderation struct {
	ID     string // unique; a node applies each once
	Action string // ModRemove, ModMute, ModLock, ModUnlock, ModEnd
	Target string // participant id (ModRemove, ModMute)
	Kind   string // "audio" or "video" (ModMute)
	By     string // the admin's display name
	Origin string // the admin's node
}

// check validates the action and its fields.
func (m Moderation) check() error {
	switch m.Action {
	case ModRemove:
	case ModMute:
		if m.Kind != "audio" && m.Kind != "video" {
			return fmt.Errorf("%w: mute kind %q must be audio or video", ErrInvalidArgument, m.Kind)
		}
	case ModLock, ModUnlock, ModEnd:
		return nil
	default:
		return fmt.Errorf("%w: unknown moderation action %q", ErrInvalidArgument, m.Action)
	}
	if m.Target == "" {
		return fmt.Errorf("%w: %s needs a participant", ErrInvalidArgument, m.Action)
	}
	return nil
}

// Moderate applies an admin's action to the room on this node and reports
// it to the Observer, which carries it to the other nodes of the room. The
// caller checks that p may moderate. Errors: ErrInvalidArgument (bad
// action, or a target not in the room), ErrParticipantClosed.
func (p *Participant) Moderate(m Moderation) error {
	if err := m.check(); err != nil {
		return err
	}
	p.mu.Lock()
	closing := p.closing
	p.mu.Unlock()
	if closing {
		return ErrParticipantClosed
	}
	r := p.room
	if m.Target != "" && !r.hasParticipant(m.Target) {
		return fmt.Errorf("%w: participant %q is not in the room", ErrInvalidArgument, m.Target)
	}
	m.ID, m.By, m.Origin = newID(), p.info.Name, r.e.cfg.NodeID
	p.log.Info("moderation", "action", m.Action, "target", m.Target, "kind", m.Kind)
	r.applyModeration(m)
	if o := r.e.getObserver(); o != nil {
		o.Moderated(r, m)
	}
	return nil
}

// ApplyRemoteModeration applies a moderation made on another node (each
// id once). Returns ErrRoomClosed if the room is gone, ErrInvalidArgument
// for a malformed one.
func (r *Room) ApplyRemoteModeration(m Moderation) error {
	if err := m.check(); err != nil {
		return err
	}
	if m.ID == "" {
		return fmt.Errorf("%w: moderation without id", ErrInvalidArgument)
	}
	if r.isClosed() {
		return ErrRoomClosed
	}
	r.applyModeration(m)
	return nil
}

// Locked reports whether the room is locked (ModLock).
func (r *Room) Locked() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.locked
}

// hasParticipant reports whether id is a local or remote participant.
func (r *Room) hasParticipant(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.locals[id] != nil || r.remotes[id] != nil
}

// applyModeration carries out m on this node, once per id.
func (r *Room) applyModeration(m Moderation) {
	r.mu.Lock()
	if slices.Contains(r.modSeen, m.ID) {
		r.mu.Unlock()
		return
	}
	r.modSeen = append(r.modSeen, m.ID)
	if len(r.modSeen) > maxModSeen {
		r.modSeen = r.modSeen[len(r.modSeen)-maxModSeen:]
	}
	target := r.locals[m.Target]
	var over []*Participant
	switch m.Action {
	case ModLock, ModUnlock:
		r.locked = m.Action == ModLock
		mm := m
		over = r.enqueueLocked(nil, action{kind: actEvent, ev: Event{Type: EventModerated, Moderation: &mm}})
	case ModMute:
		if target != nil {
			mm := m
			if target.enqueue(action{kind: actEvent, ev: Event{Type: EventModerated, Moderation: &mm}}) {
				over = append(over, target)
			}
		}
	}
	r.mu.Unlock()
	closeOverflowed(over)

	switch m.Action {
	case ModMute:
		if target != nil {
			r.updateLocal(target, func(i *ParticipantInfo) {
				if m.Kind == "audio" {
					i.AudioMuted = true
				} else {
					i.VideoMuted = true
				}
			})
		}
	case ModRemove:
		if target != nil {
			target.closeAsync(ErrRemoved)
		}
	case ModEnd:
		r.e.endRoom(r.name)
		r.e.goAsync(func() { r.closeLocals(ErrRoomEnded) })
	}
}

// endRoom refuses joins of room for Config.EndedRoomHold.
func (e *Engine) endRoom(room string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	for name, until := range e.ended {
		if now.After(until) {
			delete(e.ended, name)
		}
	}
	e.ended[room] = now.Add(e.cfg.EndedRoomHold)
}

// roomEnded reports whether room was ended less than EndedRoomHold ago.
// Caller holds e.mu.
func (e *Engine) roomEndedLocked(room string) bool {
	until, ok := e.ended[room]
	return ok && time.Now().Before(until)
}
