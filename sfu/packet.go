package sfu

import "github.com/pion/rtp"

// ParseForwarded parses b, an RTP packet received from a publisher or a
// node-to-node link, into pkt for Producer.WriteRTP, reusing pkt's storage
// (no allocation once pkt has been used). Header extensions (their ids are
// negotiated per peer connection, so they mean nothing to subscribers,
// whose senders add their own) and padding are stripped. It reports false
// for packets not to forward: unparsable, or without payload (padding
// only). The engine's publisher reader and the cluster's pipes use it.
func ParseForwarded(pkt *rtp.Packet, b []byte) bool {
	return parseForwarded(pkt, b, nil)
}

// parseForwarded is ParseForwarded that first hands the packet's audio
// level (RFC 6464) to m, when m is not nil.
func parseForwarded(pkt *rtp.Packet, b []byte, m *levelMeter) bool {
	if err := pkt.Unmarshal(b); err != nil || len(pkt.Payload) == 0 {
		return false
	}
	if m != nil {
		m.observe(&pkt.Header)
	}
	pkt.Extension = false
	pkt.ExtensionProfile = 0
	pkt.Extensions = pkt.Extensions[:0]
	pkt.Padding = false
	pkt.Header.PaddingSize = 0
	pkt.PaddingSize = 0 //nolint:staticcheck // deprecated field still copied by pion
	return true
}
