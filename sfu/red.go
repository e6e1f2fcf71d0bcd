package sfu

import (
	"encoding/binary"
	"strings"

	"github.com/pion/webrtc/v4"
)

// Redundant audio (RED, RFC 2198) for Opus: a RED packet carries the
// current Opus frame (the primary block, last) after earlier frames
// (redundant blocks), so one lost packet costs nothing. Chromium offers
// "red/48000/2" with fmtp "111/111" next to Opus and sends it when the
// answer prefers it; the engine answers publishers with RED first (unless
// Config.NoAudioRED) and forwards RED as it comes. A subscriber whose
// peer connection did not negotiate RED gets the primary blocks as plain
// Opus (fanoutTrack.Bind, redPrimary), so nobody loses audio for it.

// mimeTypeRED is RED's mime type (pion has no constant for it).
const mimeTypeRED = "audio/red"

// redPayloadType and redFmtp are RED's registration: Chromium's payload
// type, and Opus (111) as both blocks' payload type.
const (
	redPayloadType = 63
	redFmtp        = "111/111"
)

// redCodec is the RED codec registered on every MediaEngine.
func redCodec() webrtc.RTPCodecParameters {
	return webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: mimeTypeRED, ClockRate: 48000, Channels: 2, SDPFmtpLine: redFmtp,
		},
		PayloadType: redPayloadType,
	}
}

// isRED reports whether mime is RED's.
func isRED(mime string) bool { return strings.EqualFold(mime, mimeTypeRED) }

// redPrimary returns the primary block of a RED payload (a slice of it,
// possibly empty), or errBadRED when the block headers do not fit the
// payload. Never allocates.
func redPrimary(payload []byte) ([]byte, error) {
	skip, i := 0, 0
	for {
		if i >= len(payload) {
			return nil, errBadRED
		}
		if payload[i]&0x80 == 0 { // the last header: the primary block's
			i++
			break
		}
		if i+4 > len(payload) {
			return nil, errBadRED
		}
		skip += int(binary.BigEndian.Uint16(payload[i+2:i+4]) & 0x3ff)
		i += 4
	}
	if i+skip > len(payload) {
		return nil, errBadRED
	}
	return payload[i+skip:], nil
}

// preferRED makes RED the preferred codec of pc's audio transceivers when
// the remote offer (in pc's remote description) has RED over Opus with
// the engine's payload types (Chromium's), so that the publisher sends
// RED: a sender uses the answer's first codec. Other offers keep Opus
// first. Called between SetRemoteDescription and CreateAnswer.
func preferRED(pc *webrtc.PeerConnection) {
	rd := pc.RemoteDescription()
	if rd == nil || !offersRED(rd.SDP) {
		return
	}
	prefs := []webrtc.RTPCodecParameters{redCodec(), opusCodec()}
	for _, tr := range pc.GetTransceivers() {
		if tr.Kind() == webrtc.RTPCodecTypeAudio {
			_ = tr.SetCodecPreferences(prefs) // refused only if not negotiated
		}
	}
}

// offersRED reports whether sdp maps RED over Opus to the engine's
// payload types.
func offersRED(sdp string) bool {
	return strings.Contains(sdp, "a=rtpmap:63 red/48000/2") &&
		strings.Contains(sdp, "a=fmtp:63 111/111") &&
		strings.Contains(sdp, "a=rtpmap:111 opus/48000/2")
}
