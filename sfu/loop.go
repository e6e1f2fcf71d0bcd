package sfu

import (
	"maps"
	"slices"
	"sync"
	"time"
)

// Participant event loop.
//
// Every change another goroutine wants a participant to see (a producer
// added or removed, a participant joined or left, a peer connection state,
// a subscriber offer to make after an answer) is an action appended to the
// participant's queue. The room enqueues while it holds its lock, so one
// participant's queue is in the room's order. The participant's own
// goroutine (run) applies the actions in order: it adds and drops
// consumers, emits the events to the EventHandler and makes the subscriber
// offers. Renegotiation is debounced: the first consumer change arms a
// timer, later changes push it back by negotiationDelay (at most
// maxNegotiationDelay after the first), and one offer covers all of them.
// Enqueueing never blocks: a participant whose queue holds maxActions
// actions is closed with ErrQueueOverflow.

const (
	// negotiationDelay is how long a consumer change waits for more
	// changes before the subscriber offer is made.
	negotiationDelay = 100 * time.Millisecond
	// maxNegotiationDelay bounds the debounce under continuous churn.
	maxNegotiationDelay = 10 * negotiationDelay
	// maxActions bounds a participant's queue; a participant that falls
	// that far behind is closed.
	maxActions = 4096
)

// actionKind says what an action does.
type actionKind uint8

const (
	actJoined              actionKind = iota // emit participant-joined (info)
	actLeft                                  // emit participant-left (info)
	actProducerAdded                         // emit producer-added, add a consumer (prod)
	actProducerRemoved                       // drop the consumer, emit producer-removed (prod)
	actEvent                                 // emit ev as is
	actOffer                                 // make a subscriber offer now
	actBarrier                               // report on done (tests: wait until earlier actions ran)
	actAllocate                              // run the layer allocator now
	actSubscriberConnected                   // release the consumers held until the subscriber PC connected
	actUpdated                               // emit participant-updated (info)
	actChat                                  // emit chat (chat)
)

// action is one entry of a participant's queue.
type action struct {
	kind actionKind
	info ParticipantInfo
	prod *Producer
	ev   Event
	done chan bool    // actBarrier: receives whether an offer is scheduled
	chat *ChatMessage // actChat; shared by every participant's action, copied on emit
}

// actionQueue is a participant's bounded queue of actions. Its mutex is a
// leaf: it is taken with Room.mu held and nothing is taken under it.
type actionQueue struct {
	wake chan struct{} // capacity 1: actions are waiting

	mu       sync.Mutex // guards the fields below
	actions  []action
	overflow bool // maxActions was reached; later actions are dropped
}

func newActionQueue() *actionQueue {
	return &actionQueue{wake: make(chan struct{}, 1)}
}

// push appends a; false when the queue overflowed (now or before). Never
// blocks.
func (q *actionQueue) push(a action) bool {
	q.mu.Lock()
	if q.overflow || len(q.actions) >= maxActions {
		q.overflow = true
		q.mu.Unlock()
		return false
	}
	q.actions = append(q.actions, a)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true
}

// take returns the queued actions and empties the queue; buf is reused.
func (q *actionQueue) take(buf []action) []action {
	q.mu.Lock()
	defer q.mu.Unlock()
	buf = append(buf[:0], q.actions...)
	clear(q.actions)
	q.actions = q.actions[:0]
	return buf
}

// enqueue hands a to p's goroutine without blocking; true when p's queue
// overflowed: the caller then calls p.overflowed once it holds no lock
// (enqueue itself may be called with Room.mu held).
func (p *Participant) enqueue(a action) (overflowed bool) {
	return !p.queue.push(a)
}

// post enqueues a when no lock is held, closing p on overflow.
func (p *Participant) post(a action) {
	if p.enqueue(a) {
		p.overflowed()
	}
}

// overflowed closes p after its queue overflowed. Must not be called with
// Room.mu held.
func (p *Participant) overflowed() {
	p.log.Warn("event queue overflow, closing participant", "max", maxActions)
	p.closeAsync(ErrQueueOverflow)
}

// barrier waits until p's goroutine ran every action queued before it, or
// p closes, and reports whether a debounced subscriber offer is scheduled
// (its timer is armed). Used by tests.
func (p *Participant) barrier() (scheduled bool) {
	a := action{kind: actBarrier, done: make(chan bool, 1)}
	if p.enqueue(a) { // overflowed: p is closing anyway
		return false
	}
	select {
	case scheduled = <-a.done:
	case <-p.closingCh:
	}
	return scheduled
}

// run is the participant's goroutine, started by start and waited for by
// closeWith. It first subscribes to the join snapshot's producers and
// offers at once, then applies queued actions until the participant
// starts closing.
func (p *Participant) run(producers []*Producer) {
	defer p.loop.Done()
	changed := false
	for _, prod := range producers {
		changed = p.addConsumer(prod) || changed
	}
	if changed {
		p.negotiate()
	}

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	tick := time.NewTicker(allocInterval)
	defer tick.Stop()
	var first time.Time // when the armed timer's first change happened; zero: not armed
	var buf []action
	for {
		select {
		case <-p.closingCh:
			return
		case <-timer.C:
			first = time.Time{}
			p.negotiate()
		case <-tick.C:
			p.reallocate()
		case <-p.queue.wake:
			buf = p.queue.take(buf)
			changed, realloc := false, false
			for i := range buf {
				switch a := &buf[i]; a.kind {
				case actBarrier:
					a.done <- changed || !first.IsZero()
				case actAllocate:
					realloc = true
				case actOffer:
					// This offer (or the one it leaves pending) covers
					// every change so far: no debounced one is due.
					timer.Stop()
					first, changed = time.Time{}, false
					p.negotiate()
				default:
					changed = p.apply(a) || changed
				}
				buf[i] = action{}
			}
			if realloc || changed {
				p.reallocate()
			}
			if !changed {
				continue
			}
			now := time.Now()
			if first.IsZero() {
				first = now
			}
			d := negotiationDelay
			if limit := first.Add(maxNegotiationDelay).Sub(now); d > limit {
				d = max(limit, 0)
			}
			timer.Reset(d) // fired timers were drained by the select
		}
	}
}

// apply runs one event action on p's goroutine (run handles actOffer and
// actBarrier itself); true when the consumer set changed (an offer is due).
func (p *Participant) apply(a *action) bool {
	switch a.kind {
	case actJoined, actLeft:
		info := a.info
		typ := EventParticipantJoined
		if a.kind == actLeft {
			typ = EventParticipantLeft
		}
		p.emit(Event{Type: typ, Participant: &info})
	case actProducerAdded:
		info := a.prod.info
		p.emit(Event{Type: EventProducerAdded, Producer: &info})
		return p.addConsumer(a.prod)
	case actProducerRemoved:
		id := a.prod.info.ID
		p.mu.Lock()
		c := p.consumers[id]
		p.mu.Unlock()
		dropped := p.dropConsumer(id, c)
		info := a.prod.info
		p.emit(Event{Type: EventProducerRemoved, Producer: &info})
		return dropped
	case actUpdated:
		info := a.info
		p.emit(Event{Type: EventParticipantUpdated, Participant: &info})
	case actChat:
		m := *a.chat
		p.emit(Event{Type: EventChat, Chat: &m})
	case actEvent:
		p.emit(a.ev)
	case actSubscriberConnected:
		p.mu.Lock()
		cs := slices.Collect(maps.Values(p.consumers))
		p.mu.Unlock()
		for _, c := range cs {
			c.release()
		}
	}
	return false
}
