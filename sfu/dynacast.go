package sfu

import (
	"sync"
	"time"
)

// Dynacast: a video layer that no consumer needs is paused at its source.
// A producer keeps its lowest layer while it has any consumer (see
// needed); a producer without consumers sends nothing.
//
// A consumer needs the layer it receives (its target) and the layer its
// subscriber would take if it were sent (its desired layer: a paused layer
// is never live, so the allocator picks among the live ones while asking
// for the better one through desired). Consumers that pipe a layer to
// another node are pinned to it, so the origin's demand includes every
// node's. A layer is resumed as soon as it is needed and paused once it
// has not been needed for dynacastHold (so a subscriber switching between
// layers does not make its publisher flap). For a local producer the
// publisher's participant gets EventEncodings; for a remote one the
// demand goes to Producer.OnDemand's callback (the cluster asks the origin
// for those layers).

const (
	// dynacastHold is how long an unneeded layer keeps being sent.
	dynacastHold = 2 * time.Second
	// dynacastTick is how often pauses are evaluated.
	dynacastTick = 250 * time.Millisecond
)

// demandState is a producer's dynacast state, guarded by its mu.
type demandState struct {
	mu       sync.Mutex
	active   uint8 // layers the source was last told to send (bitmask)
	reported bool  // active was reported at least once
	since    [maxLayers]int64
	onDemand func(layers uint8)
}

// OnDemand sets f to be called with the layers (bitmask, bit i = layer i)
// some local consumer needs, whenever that set changes (after the hold for
// removals). The set starts as the lowest layer (what a node asks the
// origin for first) and is first reported at the first evaluation. Set by the cluster on remote producers before consumers exist;
// f is called from the engine's dynacast goroutine and must not block.
func (p *Producer) OnDemand(f func(layers uint8)) {
	p.demand.mu.Lock()
	p.demand.onDemand = f
	p.demand.mu.Unlock()
}

// needed returns the layers some consumer targets or desires, and the
// lowest layer whenever the producer has a consumer at all: a subscriber
// whose bandwidth collapses, or whose hidden tile is shown again, then
// switches at the next keyframe instead of waiting for the publisher to
// resume a layer (about 100 kbit/s of upstream for it) or, for a remote
// producer, for the origin to add a layer to the link (a renegotiation
// round: seconds). A remote producer's demand is what crosses the link.
func (p *Producer) needed() uint8 {
	m, _ := p.demandOf()
	return m
}

// demandOf returns needed's layers and, in one pass over the consumers,
// the layers some consumer waits for (its target, not yet forwarded).
func (p *Producer) demandOf() (needed, waiting uint8) {
	p.track.eachWant(func(w *layerWant) {
		needed |= 1
		if t := w.target.Load(); t >= 0 && t < maxLayers {
			needed |= 1 << t
			if w.current.Load() != t && !w.held.Load() {
				waiting |= 1 << t
			}
		}
		if d := w.desired.Load(); d >= 0 && d < maxLayers {
			needed |= 1 << d
		}
	})
	return needed, waiting
}

// demandChanged is called when a consumer's layers changed or it closed:
// a newly needed layer is resumed at once, the rest waits for the tick.
func (p *Producer) demandChanged() {
	if p.info.Kind != KindVideo {
		return
	}
	n := p.needed()
	p.demand.mu.Lock()
	resume := n&^p.demand.active != 0
	p.demand.mu.Unlock()
	if resume {
		p.dyn.wake(p)
	}
}

// evaluateDemand updates the producer's active layers at now and reports
// a change. It also asks again for a keyframe of every layer a consumer
// waits for (switching to it, or not started): the request made when its
// target changed may have been throttled, and a consumer of a layered
// producer starts or switches only at a keyframe.
func (p *Producer) evaluateDemand(now int64) {
	if p.info.Kind != KindVideo || p.closedFlag.Load() {
		return
	}
	n, waiting := p.demandOf()
	for i := range p.layers {
		if waiting&(1<<i) != 0 && p.layers[i].live(now) {
			p.requestLayerKeyframe(i)
		}
	}
	all := uint8(1)<<len(p.layers) - 1
	d := &p.demand
	d.mu.Lock()
	if !d.reported {
		// A publisher starts with every layer on; a remote producer with
		// its lowest (what the cluster asks the origin for first).
		d.active = all
		if p.owner == nil {
			d.active = 1
		}
		for i := range d.since {
			d.since[i] = now
		}
	}
	next := n & all
	for i := range p.layers {
		if n&(1<<i) != 0 {
			d.since[i] = now
		} else if d.active&(1<<i) != 0 && now-d.since[i] < int64(dynacastHold) {
			next |= 1 << i
		}
	}
	changed := next != d.active || !d.reported
	d.active, d.reported = next, true
	f := d.onDemand
	d.mu.Unlock()
	if !changed {
		return
	}
	if p.owner != nil {
		p.owner.post(action{kind: actEvent, ev: Event{Type: EventEncodings, Encodings: p.encodings(next)}})
	} else if f != nil {
		f(next)
	}
}

// encodings describes active (a layer bitmask) for the publisher.
func (p *Producer) encodings(active uint8) *EncodingsInfo {
	e := &EncodingsInfo{ProducerID: p.info.ID, Mid: p.mid, Layers: make([]LayerActive, len(p.layers))}
	for i := range p.layers {
		e.Layers[i].Active = active&(1<<i) != 0
		if i < len(p.info.Layers) {
			e.Layers[i].RID = p.info.Layers[i]
		}
	}
	return e
}

// ActiveLayers returns the layers the source was last told to send
// (before the first evaluation: all for a local producer, the lowest for a
// remote one). Addition to the spec (tests, status).
func (p *Producer) ActiveLayers() uint8 {
	p.demand.mu.Lock()
	defer p.demand.mu.Unlock()
	if !p.demand.reported {
		if p.owner == nil {
			return 1
		}
		return uint8(1)<<len(p.layers) - 1
	}
	return p.demand.active
}

// dynacast is the engine's goroutine that evaluates the demand of every
// video producer: all of them every dynacastTick, one at once when a
// consumer needs a paused layer.
type dynacast struct {
	wakeCh chan struct{}
	stop   chan struct{}
	wg     sync.WaitGroup

	mu        sync.Mutex
	producers map[*Producer]struct{}
	urgent    map[*Producer]struct{}
}

func newDynacast() *dynacast {
	d := &dynacast{
		wakeCh:    make(chan struct{}, 1),
		stop:      make(chan struct{}),
		producers: make(map[*Producer]struct{}),
		urgent:    make(map[*Producer]struct{}),
	}
	d.wg.Add(1)
	go d.run()
	return d
}

// add starts evaluating p (a video producer).
func (d *dynacast) add(p *Producer) {
	if d == nil {
		return
	}
	if p.info.Kind != KindVideo {
		return
	}
	d.mu.Lock()
	d.producers[p] = struct{}{}
	d.urgent[p] = struct{}{}
	d.mu.Unlock()
	d.signal()
}

// remove stops evaluating p.
func (d *dynacast) remove(p *Producer) {
	if d == nil {
		return
	}
	d.mu.Lock()
	delete(d.producers, p)
	delete(d.urgent, p)
	d.mu.Unlock()
}

// wake evaluates p as soon as possible.
func (d *dynacast) wake(p *Producer) {
	if d == nil {
		return
	}
	d.mu.Lock()
	if _, ok := d.producers[p]; ok {
		d.urgent[p] = struct{}{}
	}
	d.mu.Unlock()
	d.signal()
}

func (d *dynacast) signal() {
	select {
	case d.wakeCh <- struct{}{}:
	default:
	}
}

// close stops the goroutine and waits for it.
func (d *dynacast) close() {
	close(d.stop)
	d.wg.Wait()
}

func (d *dynacast) run() {
	defer d.wg.Done()
	t := time.NewTicker(dynacastTick)
	defer t.Stop()
	var batch []*Producer
	for {
		all := false
		select {
		case <-d.stop:
			return
		case <-t.C:
			all = true
		case <-d.wakeCh:
		}
		d.mu.Lock()
		batch = batch[:0]
		if all {
			for p := range d.producers {
				batch = append(batch, p)
			}
		} else {
			for p := range d.urgent {
				batch = append(batch, p)
			}
		}
		clear(d.urgent)
		d.mu.Unlock()
		now := time.Now().UnixNano()
		for _, p := range batch {
			p.evaluateDemand(now)
		}
		clear(batch)
	}
}
