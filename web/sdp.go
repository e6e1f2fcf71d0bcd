package web

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/pion/ice/v4"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/confab/confab/sfu"
)

// Limits on client session descriptions, checked before the engine sees
// them. The engine (pion) accepts SDPs that no browser sends but that cost
// the node dearly: a publish offer with a thousand m-lines becomes a
// thousand transceivers, and thousands of candidates make the ICE agent
// send connectivity checks to thousands of addresses chosen by the client
// (a traffic amplifier). Browsers stay far below these limits.
const (
	// maxPublishMedia bounds the m-sections of a publish offer (a browser
	// sends one per camera, microphone or screen track).
	maxPublishMedia = sfu.MaxSources
	// maxSDPCandidates bounds the a=candidate lines of one SDP.
	maxSDPCandidates = 64
	// maxTrickleCandidates bounds the candidates trickled per peer
	// connection over a session's lifetime.
	maxTrickleCandidates = 100
	// maxFmtpLen bounds the parameters of one a=fmtp line.
	maxFmtpLen = 512
)

// checkSDP parses a client session description (a publish offer or a
// subscriber answer) and applies the limits above. Errors are
// *protocolError of kind sfu.ErrInvalidSDP (wire code invalid-sdp). Pure;
// never panics.
func checkSDP(msgType string, typ webrtc.SDPType, text string) error {
	if !utf8.ValidString(text) {
		return protoErrorf(sfu.ErrInvalidSDP, "%s: sdp is not valid UTF-8", msgType)
	}
	for i := 0; i < len(text); i++ {
		if c := text[i]; (c < 0x20 && c != '\r' && c != '\n' && c != '\t') || c == 0x7f {
			return protoErrorf(sfu.ErrInvalidSDP, "%s: sdp contains control character 0x%02x", msgType, c)
		}
	}
	var desc sdp.SessionDescription
	if err := desc.UnmarshalString(text); err != nil {
		return protoErrorf(sfu.ErrInvalidSDP, "%s: unparsable sdp: %s", msgType, truncate(err.Error(), 120))
	}
	media := desc.MediaDescriptions
	if typ == webrtc.SDPTypeOffer {
		switch {
		case len(media) == 0:
			return protoErrorf(sfu.ErrInvalidSDP, "%s: the offer has no media sections (m= lines)", msgType)
		case len(media) > maxPublishMedia:
			return protoErrorf(sfu.ErrInvalidSDP, "%s: the offer has %d media sections, at most %d are allowed", msgType, len(media), maxPublishMedia)
		}
	}
	candidates := 0
	count := func(attrs []sdp.Attribute) error {
		for _, a := range attrs {
			if !a.IsICECandidate() {
				continue
			}
			if candidates++; candidates > maxSDPCandidates {
				return protoErrorf(sfu.ErrInvalidSDP, "%s: more than %d ICE candidates in the sdp", msgType, maxSDPCandidates)
			}
			if _, err := ice.UnmarshalCandidate(a.Value); err != nil {
				return protoErrorf(sfu.ErrInvalidSDP, "%s: unparsable candidate %q: %s", msgType, truncate(a.Value, 48), truncate(err.Error(), 80))
			}
		}
		return nil
	}
	if err := count(desc.Attributes); err != nil {
		return err
	}
	for i, m := range media {
		if typ == webrtc.SDPTypeOffer && m.MediaName.Media != "audio" && m.MediaName.Media != "video" {
			return protoErrorf(sfu.ErrInvalidSDP, "%s: media section %d is %q; only audio and video can be published", msgType, i, truncate(m.MediaName.Media, 16))
		}
		if err := count(m.Attributes); err != nil {
			return err
		}
		if err := checkFormats(msgType, i, m); err != nil {
			return err
		}
	}
	return nil
}

// checkFormats checks the payload types of one media section: the formats
// of its m= line, and the rtpmap and fmtp attributes, which must refer to
// payload types 0-127 and, for fmtp, carry printable parameters only.
func checkFormats(msgType string, index int, m *sdp.MediaDescription) error {
	if m.MediaName.Media != "audio" && m.MediaName.Media != "video" {
		return nil // e.g. a rejected application section in an answer
	}
	for _, f := range m.MediaName.Formats {
		if !validPayloadType(f) {
			return protoErrorf(sfu.ErrInvalidSDP, "%s: media section %d: bad payload type %q", msgType, index, truncate(f, 16))
		}
	}
	for _, a := range m.Attributes {
		if a.Key != "rtpmap" && a.Key != "fmtp" {
			continue
		}
		pt, params, _ := strings.Cut(a.Value, " ")
		if !validPayloadType(pt) {
			return protoErrorf(sfu.ErrInvalidSDP, "%s: media section %d: a=%s with bad payload type %q", msgType, index, a.Key, truncate(pt, 16))
		}
		if a.Key == "rtpmap" {
			continue
		}
		if len(params) > maxFmtpLen {
			return protoErrorf(sfu.ErrInvalidSDP, "%s: media section %d: a=fmtp longer than %d bytes", msgType, index, maxFmtpLen)
		}
		for _, r := range params {
			if r < 0x20 || r > 0x7e {
				return protoErrorf(sfu.ErrInvalidSDP, "%s: media section %d: a=fmtp:%s has non-printable parameters", msgType, index, pt)
			}
		}
	}
	return nil
}

// validPayloadType reports whether s is a decimal RTP payload type 0-127.
func validPayloadType(s string) bool {
	if s == "" || len(s) > 3 {
		return false
	}
	n, err := strconv.Atoi(s)
	return err == nil && n >= 0 && n <= 127 && strconv.Itoa(n) == s
}

// mids returns the a=mid value of every media section of an SDP ("" for a
// section without one), or nil when it does not parse.
func mids(text string) []string {
	var desc sdp.SessionDescription
	if err := desc.UnmarshalString(text); err != nil {
		return nil
	}
	out := make([]string, len(desc.MediaDescriptions))
	for i, m := range desc.MediaDescriptions {
		out[i], _ = m.Attribute("mid")
	}
	return out
}

// sendingSources returns the source of every media section of an offer
// that sends (direction sendrecv, sendonly or none given): the one named in
// sources by mid when it fits the media kind, else "microphone" for audio
// and "camera" for video. An unparsable offer gives nil (the engine
// refuses it anyway).
func sendingSources(text string, sources map[string]string) []string {
	var desc sdp.SessionDescription
	if err := desc.UnmarshalString(text); err != nil {
		return nil
	}
	var out []string
	for _, m := range desc.MediaDescriptions {
		if m.MediaName.Port.Value == 0 {
			continue // rejected or stopped
		}
		sending := true
		for _, a := range m.Attributes {
			if a.Key == "recvonly" || a.Key == "inactive" {
				sending = false
			}
		}
		if !sending {
			continue
		}
		mid, _ := m.Attribute("mid")
		src := sources[mid]
		// A name that does not fit the media kind counts as that kind's
		// default: an audio m-line cannot be a camera.
		switch m.MediaName.Media {
		case "audio":
			if src != sfu.SourceScreenAudio {
				src = sfu.SourceMicrophone
			}
		case "video":
			if src != sfu.SourceScreen {
				src = sfu.SourceCamera
			}
		default:
			continue
		}
		out = append(out, src)
	}
	return out
}

// matchOffer checks that an answer has exactly the media sections of the
// offer it answers, in the same order (RFC 3264 section 6); offerMids are
// the mids of that offer. The engine would otherwise accept a mismatched
// answer and fail at the next renegotiation. Errors are *protocolError of
// kind sfu.ErrInvalidSDP.
func matchOffer(msgType, answer string, offerMids []string) error {
	got := mids(answer)
	if len(got) != len(offerMids) {
		return protoErrorf(sfu.ErrInvalidSDP, "%s: the answer has %d media sections, the offer has %d", msgType, len(got), len(offerMids))
	}
	for i := range got {
		if got[i] != offerMids[i] {
			return protoErrorf(sfu.ErrInvalidSDP, "%s: media section %d has mid %q, the offer's has %q", msgType, i, truncate(got[i], 16), offerMids[i])
		}
	}
	return nil
}
