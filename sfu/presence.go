package sfu

import "fmt"

// Presence and media state.
//
// Every participant of a room, local or remote, publishing or not, is in
// the room's participant list. A local participant's media state
// (microphone or camera off, speaking) lives in Participant.cur under the
// room lock; a change is queued to every other local participant as
// EventParticipantUpdated and reported to the Observer, which carries it to
// the other nodes. A remote participant is in the list while the presence
// its node announces (SetRemoteParticipants) or one of its piped producers
// holds it.

// SetMediaState records what the participant announces about its media
// (microphone muted, camera off); the others get EventParticipantUpdated
// when it changed. A muted microphone is not speaking. Errors:
// ErrParticipantClosed.
func (p *Participant) SetMediaState(st MediaState) error {
	if !p.room.updateLocal(p, func(info *ParticipantInfo) {
		info.AudioMuted, info.VideoMuted = st.AudioMuted, st.VideoMuted
		if st.AudioMuted {
			info.Speaking = false
		}
	}) {
		return ErrParticipantClosed
	}
	return nil
}

// setSpeaking records whether the participant is speaking (speaking.go).
func (p *Participant) setSpeaking(on bool) {
	p.room.updateLocal(p, func(info *ParticipantInfo) {
		info.Speaking = on && !info.AudioMuted
	})
}

// currentInfo returns p's description with its current media state.
func (r *Room) currentInfo(p *Participant) ParticipantInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return p.cur
}

// updateLocal applies f to the current description of the local
// participant p; a change is queued to the other local participants and
// reported to the Observer. It reports false when p is no longer in the
// room.
func (r *Room) updateLocal(p *Participant, f func(*ParticipantInfo)) bool {
	r.mu.Lock()
	if r.locals[p.id] != p {
		r.mu.Unlock()
		return false
	}
	old := p.cur
	f(&p.cur)
	info := p.cur
	if info == old || p.hidden {
		r.mu.Unlock()
		return true
	}
	over := r.enqueueLocked(p, action{kind: actUpdated, info: info})
	r.mu.Unlock()
	closeOverflowed(over)
	if o := r.e.getObserver(); o != nil {
		o.ParticipantChanged(r, info, true)
	}
	return true
}

// SetRemoteParticipants replaces the participants that node origin
// announces in the room (every participant connected to it, publishing or
// not). Local participants get participant-joined for new ones,
// participant-updated for changed ones and participant-left for those no
// longer listed (unless their piped producers still hold them). An empty
// list forgets everything origin announced (it left the room or died).
// Entries need an ID (others are ignored); Origin and Remote are set here.
// Returns ErrRoomClosed if the room is gone, ErrInvalidArgument for an
// empty origin or this node's own id.
func (r *Room) SetRemoteParticipants(origin string, ps []ParticipantInfo) error {
	if origin == "" || origin == r.e.cfg.NodeID {
		return fmt.Errorf("sfu: set remote participants: %w: origin %q", ErrInvalidArgument, origin)
	}
	want := make(map[string]ParticipantInfo, len(ps))
	for _, info := range ps {
		if info.ID == "" {
			continue
		}
		info.Origin, info.Remote = origin, true
		want[info.ID] = info
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrRoomClosed
	}
	var acts []action
	for id, rp := range r.remotes {
		if rp.announced && rp.info.Origin == origin {
			if _, ok := want[id]; !ok {
				rp.announced = false
				if rp.producers <= 0 {
					delete(r.remotes, id)
					acts = append(acts, action{kind: actLeft, info: rp.info})
				}
			}
		}
	}
	for id, info := range want {
		if r.locals[id] != nil {
			continue
		}
		rp := r.remotes[id]
		if rp == nil {
			r.seq++
			rp = &remoteParticipant{info: info, seq: r.seq, announced: true}
			r.remotes[id] = rp
			acts = append(acts, action{kind: actJoined, info: info})
			continue
		}
		rp.announced = true
		if rp.info != info {
			rp.info = info
			acts = append(acts, action{kind: actUpdated, info: info})
		}
	}
	over := r.enqueueLocked(nil, acts...)
	replaced := r.replacedLocked(want)
	r.mu.Unlock()
	closeOverflowed(over)
	for _, p := range replaced {
		p.log.Info("participant replaced by a newer session of its identity on another node")
		p.closeAsync(ErrReplaced)
	}
	return nil
}

// replacedLocked returns the local participants that a remote one of the
// same identity supersedes: it joined later (ties: the larger id wins).
// Linear in locals plus remotes: presence is pushed on every media state
// and speaking change. Caller holds r.mu.
func (r *Room) replacedLocked(remote map[string]ParticipantInfo) []*Participant {
	var byIdentity map[string][]*Participant
	for _, p := range r.locals {
		if p.identity != "" {
			if byIdentity == nil {
				byIdentity = make(map[string][]*Participant)
			}
			byIdentity[p.identity] = append(byIdentity[p.identity], p)
		}
	}
	if byIdentity == nil {
		return nil
	}
	var out []*Participant
	for _, info := range remote {
		for _, p := range byIdentity[info.Identity] {
			if p.info.Since < info.Since || p.info.Since == info.Since && p.id < info.ID {
				out = append(out, p)
			}
		}
	}
	return out
}
