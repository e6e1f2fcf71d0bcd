// Package sfu is confab's selective forwarding unit: it terminates WebRTC
// peer connections of participants, turns every published track into a
// Producer and fans its RTP out to Consumers on the other participants'
// subscriber peer connections (and to cluster pipes).
//
// # Objects and ownership
//
// An Engine owns the single ICE UDP mux socket, the rooms and (indirectly)
// every peer connection. A Room exists while it has at least one local
// Participant. A Participant owns two peer connections: the publisher PC
// (client offers via Participant.Publish, the server answers) and the
// subscriber PC (the server offers via EventSubscriberOffer, the client
// answers via Participant.SetSubscriberAnswer). Each incoming track becomes a
// Producer; remote producers (piped from another node) are added with
// Room.AddProducer. A Consumer binds a Producer to one peer connection.
//
// # Signaling call order (package web)
//
//	p, err := engine.Join(room, sfu.JoinParams{Name: name, Events: handler})
//	peers, producers := p.InitialState()     // for the "joined" message
//	// client "publish"            -> answer, err := p.Publish(offer)
//	// client "subscriber-answer"  -> err := p.SetSubscriberAnswer(answer)
//	// client "candidate"          -> err := p.AddICECandidate(target, cand)
//	// client "leave" / socket end -> p.Close()
//	// engine-initiated close      -> handler gets EventClosed, <-p.Done()
//
// The server does not trickle: the SDP returned by Publish and carried by
// EventSubscriberOffer already contains all server candidates (gathering on
// the UDP mux is immediate), so EventICECandidate is currently never emitted.
// Clients may trickle their own candidates with AddICECandidate.
//
// Events can be delivered before Join returns (notably the initial
// EventSubscriberOffer when the room already has producers), so an
// EventHandler must be ready to queue events as soon as it is passed to Join.
//
// # Concurrency
//
// Every object has one mutex; no engine lock is held while EventHandler or
// Observer methods run. Every goroutine started by the package has an owner
// that stops and waits for it on Close; Engine.Close returns only after all
// of them have exited.
package sfu
