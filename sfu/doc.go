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
// A Viewer (Engine.View, WHEP) is the one client-offered receiving path: a
// hidden participant plus a peer connection that answers a recvonly offer
// with one audio and one video sender, which it moves between the
// producers of the participant it shows (viewer.go).
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
// # Forwarding path
//
// Producer.WriteLayerRTP is the hot path: for every packet it copies the
// packet once into its layer's NACK cache (video only; packetCache, from
// which each Consumer answers its subscriber's NACKs, instead of pion's
// nack responder that kept a copy per subscriber), then writes it to every
// bound RTPSender that forwards that layer through a lock-free
// copy-on-write binding list (fanoutTrack), reusing one header per
// goroutine; a fan-out to many (2×Config.FanoutShardMin or more) is split
// into shards written in parallel by the engine's fan-out workers and the
// reader (shard.go). Each
// binding rewrites sequence numbers, timestamps and VP8 picture IDs
// (munger) so that switching between simulcast layers, or pausing and
// resuming, looks like one stream to the receiver; a switch happens at a
// keyframe of the target layer. The writes go through pion's interceptors,
// SRTP (AEAD_AES_128_GCM preferred) and the ICE UDP mux into batchConn,
// which queues the datagrams of the fan-out and sends them with sendmmsg
// (Config.WriteBatch per call) when the queue is full and when the fan-out
// ends; writes outside a fan-out go straight to the socket. With
// Config.FastWrite (experimental, off by default) a subscriber connection's
// RTP leaves the innermost interceptor through the engine's own SRTP
// context straight to batchConn, skipping pion's SRTP session, mux
// endpoint and ICE connection (fastwrite.go). In steady state nothing on
// this path allocates. BenchmarkForward measures it, and
// BenchmarkWritePathFloor compares it with the fast path and the floor.
//
// # Adaptive video
//
// A browser publishing simulcast sends up to three encodings (RIDs) of one
// track; they become the layers of one Producer (layer.go). Each
// subscriber's goroutine runs an allocator (allocate.go, adapt.go) that
// picks one layer per video consumer from the tile size and visibility
// the subscriber reports (Participant.SetVideoSettings), the bandwidth
// estimated from its transport-wide congestion control feedback, and the
// layers that are live. Dynacast (dynacast.go) pauses layers nobody needs
// at their source: EventEncodings for a local publisher, Producer.OnDemand
// for the cluster.
//
// # Concurrency
//
// Every object has one mutex; no engine lock is held while EventHandler or
// Observer methods run. Each Participant has its own goroutine with an
// action queue (loop.go): the room appends its changes (participant
// joined/left, producer added/removed) to every other local participant's
// queue under the room lock, and the participant's goroutine applies them
// in that order (consumers, events, subscriber offers), so a publisher's or
// another participant's goroutine never waits for someone else's
// negotiation. Subscriber offers are debounced: changes within about 100 ms
// share one offer. Engine.Close stops all participants of a room before
// closing them, so closing a room makes no offers. Every goroutine started by the package has an owner
// that stops and waits for it on Close; Engine.Close returns only after all
// of them have exited.
package sfu
