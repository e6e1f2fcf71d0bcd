package sfu

import (
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"time"
)

// Config defaults.
const (
	DefaultNodeID                 = "local"
	DefaultUDPAddr                = "0.0.0.0:50000"
	DefaultKeyframeInterval       = 500 * time.Millisecond
	DefaultMaxParticipantsPerRoom = 100
	DefaultMaxRooms               = 10000
	// ICE liveness defaults (pion's own are 5s, 25s and 2s). A peer that
	// goes silent (crash, kill -9, network loss) makes its peer connection
	// "disconnected" after DefaultICEDisconnectedTimeout and "failed"
	// DefaultICEFailedTimeout later, so dead browsers and dead node links
	// are noticed within seconds. The keepalive (a STUN binding request on
	// the selected pair) keeps healthy idle connections well inside the
	// disconnected timeout.
	DefaultICEDisconnectedTimeout = 2 * time.Second
	DefaultICEFailedTimeout       = 6 * time.Second
	DefaultICEKeepaliveInterval   = 500 * time.Millisecond
	// DefaultICERestartWindow is the default Config.ICERestartWindow: the
	// consent expiry of RFC 7675 (30 s), which RFC 9725 names as the end
	// of a WHIP session whose ICE restart failed.
	DefaultICERestartWindow = 30 * time.Second
	// DefaultWriteBatch is the default Config.WriteBatch: 64 datagrams
	// per sendmmsg (beyond that the saving per datagram is small).
	DefaultWriteBatch = 64
	// MaxWriteBatch is the largest accepted Config.WriteBatch.
	MaxWriteBatch = 1024
	// DefaultFanoutShardMin is the default Config.FanoutShardMin: a
	// fan-out is split from 128 bindings on (two shards of 64). Below
	// that, waking a worker costs more delay than the split saves.
	DefaultFanoutShardMin = 64
	// MaxFanoutWorkers is the largest accepted Config.FanoutWorkers.
	MaxFanoutWorkers = 256
	// Chat defaults: a room keeps its last 100 messages; a message has at
	// most 2 KiB of text; a participant sends at most 2 per second
	// sustained, in bursts of 8.
	DefaultChatHistory = 100
	// DefaultEndedRoomHold is how long a room an admin ended refuses joins.
	DefaultEndedRoomHold = time.Minute
	DefaultChatMaxBytes  = 2048
	DefaultChatRate      = 2.0
	DefaultChatBurst     = 8
	// DefaultMaxPublishBitrate caps what one participant publishes, all
	// tracks together: 8 Mbit/s, above what the page sends at most (a
	// 720p camera in three layers, about 2.3 Mbit/s, plus a screen share
	// in two, about 3.1 Mbit/s, plus audio).
	DefaultMaxPublishBitrate = 8_000_000
)

// Config configures an Engine. Call SetDefaults, then Validate (New does
// both on its own copy, so callers may pass a zero-ish Config).
type Config struct {
	// NodeID is stamped as Origin on local participants/producers.
	// Default "local".
	NodeID string
	// UDPAddr is host:port of the single ICE UDP mux socket, e.g.
	// "0.0.0.0:50000", or "127.0.0.1:0" in tests (0 = ephemeral port; see
	// Engine.UDPAddr). Default "0.0.0.0:50000".
	UDPAddr string
	// PublicIPs are optional NAT 1:1 IPs advertised as extra host
	// candidates next to the local interface addresses: browsers outside
	// reach the public address, while other nodes on the same private
	// network still connect to the interface address.
	PublicIPs []string
	// IncludeLoopback includes loopback candidates (needed on a box with
	// only lo; the app sets true).
	IncludeLoopback bool
	// ICETCP also listens on TCP at the port number of the ICE UDP socket
	// (on the same IP) and gathers passive TCP host candidates there, so
	// browsers on networks that block UDP still connect (ICE-TCP, RFC
	// 6544). Off by default; the app turns it on (--ice-tcp).
	ICETCP bool
	// NoAudioRED answers publishers with Opus first even when they offer
	// RED (red.go). RED about doubles audio bitrate (each packet also
	// carries the previous frame) and hides single losses; by default a
	// publisher that offers it (Chromium) sends it.
	NoAudioRED bool
	// KeyframeInterval is the minimum gap between keyframe requests sent to
	// one producer. Default 500ms.
	KeyframeInterval time.Duration
	// MaxParticipantsPerRoom limits local participants per room.
	// 0 = default 100.
	MaxParticipantsPerRoom int
	// MaxRooms limits the number of rooms. 0 = default 10000.
	MaxRooms int
	// ICEDisconnectedTimeout is how long a peer connection (browser or
	// node-to-node link) may receive nothing before it is reported
	// "disconnected". Default DefaultICEDisconnectedTimeout (2s).
	ICEDisconnectedTimeout time.Duration
	// ICEFailedTimeout is how much longer a disconnected peer connection
	// may stay silent before it is reported "failed" (the participant or
	// link is then closed). Default DefaultICEFailedTimeout (6s).
	ICEFailedTimeout time.Duration
	// ICERestartWindow is how long the ICE of a connection whose client
	// restarts ICE itself over HTTP (a WHIP publisher, JoinParams.RestartsICE,
	// and a Viewer) may be down before the connection fails: the client's
	// time to notice and restart it. Such a connection turns "disconnected"
	// after ICEDisconnectedTimeout like any other and "failed" at
	// ICERestartWindow. Default DefaultICERestartWindow (30s).
	ICERestartWindow time.Duration
	// ICEKeepaliveInterval is how often ICE sends a binding request on the
	// selected candidate pair; it must be well below
	// ICEDisconnectedTimeout. Default DefaultICEKeepaliveInterval (500ms).
	ICEKeepaliveInterval time.Duration
	// WriteBatch is the most datagrams the UDP socket sends with one
	// sendmmsg system call while a producer fans a packet out (the batch
	// leaves when full and when the fan-out ends, so it adds no delay
	// beyond the fan-out itself). 1 disables batching: one sendto per
	// datagram. 0 = DefaultWriteBatch (64); at most MaxWriteBatch.
	WriteBatch int
	// FastWrite (experimental, default off) sends the media of a
	// subscriber's peer connection, once its SRTP keys are known and its
	// selected candidate pair is UDP on the engine's socket, through the
	// engine's own SRTP context straight to batchConn instead of pion's
	// SRTP session, mux endpoint and ICE connection (fastwrite.go). pion's
	// interceptors (stats, sender reports, TWCC) still see every packet.
	FastWrite bool
	// FanoutWorkers is how many goroutines share one producer's fan-out
	// of a packet, the producer's writer included (shard.go): 1 writes
	// every fan-out on the writer alone. 0 = runtime.GOMAXPROCS(0); at
	// most MaxFanoutWorkers.
	FanoutWorkers int
	// FanoutShardMin is the least number of consumer bindings per shard
	// of a split fan-out: a fan-out to N is split into
	// min(FanoutWorkers, N/FanoutShardMin) shards, and not at all below
	// 2×FanoutShardMin. 0 = DefaultFanoutShardMin (64).
	FanoutShardMin int
	// ChatHistory is how many chat messages a room keeps for participants
	// that join later. 0 = DefaultChatHistory.
	ChatHistory int
	// EndedRoomHold is how long this node refuses joins of a room an admin
	// ended (ModEnd). 0 = DefaultEndedRoomHold.
	EndedRoomHold time.Duration
	// ChatMaxBytes bounds the text of one chat message (UTF-8 bytes).
	// 0 = DefaultChatMaxBytes.
	ChatMaxBytes int
	// ChatRate and ChatBurst limit each participant's chat messages (a
	// token bucket: ChatRate per second, up to ChatBurst at once).
	// 0 = DefaultChatRate, DefaultChatBurst.
	ChatRate  float64
	ChatBurst int
	// MaxPublishBitrate caps the RTP bitrate (bit/s, headers included) a
	// participant publishes, all its tracks together: it is announced in
	// the publisher answer (b=AS and b=TIAS on video m-lines) and
	// enforced by a token bucket (refilled at the cap plus 25%, holding
	// one second of it); packets beyond it are dropped and counted
	// (Stats.PublishDropped). 0 = DefaultMaxPublishBitrate; negative
	// disables the cap.
	MaxPublishBitrate int
	// Logger is the base logger. Default slog.Default().
	Logger *slog.Logger
}

// SetDefaults fills zero fields with their defaults.
func (c *Config) SetDefaults() {
	if c.NodeID == "" {
		c.NodeID = DefaultNodeID
	}
	if c.UDPAddr == "" {
		c.UDPAddr = DefaultUDPAddr
	}
	if c.KeyframeInterval == 0 {
		c.KeyframeInterval = DefaultKeyframeInterval
	}
	if c.MaxParticipantsPerRoom == 0 {
		c.MaxParticipantsPerRoom = DefaultMaxParticipantsPerRoom
	}
	if c.MaxRooms == 0 {
		c.MaxRooms = DefaultMaxRooms
	}
	if c.ICEDisconnectedTimeout == 0 {
		c.ICEDisconnectedTimeout = DefaultICEDisconnectedTimeout
	}
	if c.ICEFailedTimeout == 0 {
		c.ICEFailedTimeout = DefaultICEFailedTimeout
	}
	if c.ICEKeepaliveInterval == 0 {
		c.ICEKeepaliveInterval = DefaultICEKeepaliveInterval
	}
	if c.ICERestartWindow == 0 {
		c.ICERestartWindow = DefaultICERestartWindow
	}
	if c.WriteBatch == 0 {
		c.WriteBatch = DefaultWriteBatch
	}
	if c.FanoutWorkers == 0 {
		c.FanoutWorkers = min(runtime.GOMAXPROCS(0), MaxFanoutWorkers)
	}
	if c.FanoutShardMin == 0 {
		c.FanoutShardMin = DefaultFanoutShardMin
	}
	if c.ChatHistory == 0 {
		c.ChatHistory = DefaultChatHistory
	}
	if c.EndedRoomHold == 0 {
		c.EndedRoomHold = DefaultEndedRoomHold
	}
	if c.ChatMaxBytes == 0 {
		c.ChatMaxBytes = DefaultChatMaxBytes
	}
	if c.ChatRate == 0 {
		c.ChatRate = DefaultChatRate
	}
	if c.ChatBurst == 0 {
		c.ChatBurst = DefaultChatBurst
	}
	if c.MaxPublishBitrate == 0 {
		c.MaxPublishBitrate = DefaultMaxPublishBitrate
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports the first invalid field. It expects SetDefaults to have
// been called (zero values that have defaults are rejected).
func (c *Config) Validate() error {
	if c.NodeID == "" {
		return fmt.Errorf("sfu: config: NodeID is empty")
	}
	host, port, err := net.SplitHostPort(c.UDPAddr)
	if err != nil {
		return fmt.Errorf("sfu: config: UDPAddr %q: %w", c.UDPAddr, err)
	}
	if host != "" && net.ParseIP(host) == nil {
		return fmt.Errorf("sfu: config: UDPAddr %q: host must be an IP address", c.UDPAddr)
	}
	if _, err := net.LookupPort("udp", port); err != nil {
		return fmt.Errorf("sfu: config: UDPAddr %q: %w", c.UDPAddr, err)
	}
	if c.ChatHistory < 0 || c.ChatMaxBytes < 0 || c.ChatRate < 0 || c.ChatBurst < 0 {
		return fmt.Errorf("sfu: config: ChatHistory, ChatMaxBytes, ChatRate and ChatBurst must not be negative")
	}
	for _, ip := range c.PublicIPs {
		if net.ParseIP(ip) == nil {
			return fmt.Errorf("sfu: config: PublicIPs: %q is not an IP address", ip)
		}
	}
	if c.KeyframeInterval < 0 {
		return fmt.Errorf("sfu: config: KeyframeInterval %v is negative", c.KeyframeInterval)
	}
	if c.MaxParticipantsPerRoom < 1 {
		return fmt.Errorf("sfu: config: MaxParticipantsPerRoom %d must be >= 1", c.MaxParticipantsPerRoom)
	}
	if c.MaxRooms < 1 {
		return fmt.Errorf("sfu: config: MaxRooms %d must be >= 1", c.MaxRooms)
	}
	if c.ICEDisconnectedTimeout <= 0 || c.ICEFailedTimeout <= 0 || c.ICEKeepaliveInterval <= 0 {
		return fmt.Errorf("sfu: config: ICE timeouts must be positive (disconnected %v, failed %v, keepalive %v)",
			c.ICEDisconnectedTimeout, c.ICEFailedTimeout, c.ICEKeepaliveInterval)
	}
	if c.ICERestartWindow <= c.ICEDisconnectedTimeout {
		return fmt.Errorf("sfu: config: ICERestartWindow %v must be longer than ICEDisconnectedTimeout %v",
			c.ICERestartWindow, c.ICEDisconnectedTimeout)
	}
	if c.ICEKeepaliveInterval >= c.ICEDisconnectedTimeout {
		return fmt.Errorf("sfu: config: ICEKeepaliveInterval %v must be shorter than ICEDisconnectedTimeout %v",
			c.ICEKeepaliveInterval, c.ICEDisconnectedTimeout)
	}
	if c.WriteBatch < 1 || c.WriteBatch > MaxWriteBatch {
		return fmt.Errorf("sfu: config: WriteBatch %d must be between 1 and %d", c.WriteBatch, MaxWriteBatch)
	}
	if c.FanoutWorkers < 1 || c.FanoutWorkers > MaxFanoutWorkers {
		return fmt.Errorf("sfu: config: FanoutWorkers %d must be between 1 and %d", c.FanoutWorkers, MaxFanoutWorkers)
	}
	if c.FanoutShardMin < 1 {
		return fmt.Errorf("sfu: config: FanoutShardMin %d must be >= 1", c.FanoutShardMin)
	}
	if c.MaxPublishBitrate > 0 && c.MaxPublishBitrate < minPublishBitrate {
		return fmt.Errorf("sfu: config: MaxPublishBitrate %d must be at least %d bit/s (negative: no cap)", c.MaxPublishBitrate, minPublishBitrate)
	}
	if c.Logger == nil {
		return fmt.Errorf("sfu: config: Logger is nil")
	}
	return nil
}
