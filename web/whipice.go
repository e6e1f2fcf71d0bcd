package web

import (
	"strings"

	"github.com/pion/ice/v4"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Trickle ICE and ICE restarts of WHIP and WHEP sessions (RFC 9725 with
// the SDP fragments of RFC 8840 and the restart rules of RFC 8839).
//
// A PATCH whose fragment has the session's current ice-ufrag (or none)
// trickles candidates. One with a new ice-ufrag and ice-pwd restarts ICE:
// WHIP and WHEP do not renegotiate anything else, so the node makes the
// client's next offer itself (the last one with the new credentials and
// the fragment's candidates in place of the old ones) and applies it to
// the session's connection, whose ICE agent then restarts with new local
// credentials; the answer's credentials and candidates go back in a
// fragment with a new ETag. Every PATCH of a session is serialised
// (mediaSession.mu). A refused one (stale ETag or credentials, malformed
// fragment or candidate) is refused before the connection is touched and
// leaves the ICE session as it was.

// maxFragCandidates bounds the candidates of one PATCH.
const maxFragCandidates = 64

// maxUsedUfrags bounds the earlier username fragments a session remembers
// (to refuse late requests of earlier ICE sessions).
const maxUsedUfrags = 16

// sdpFrag is a parsed trickle-ice-sdpfrag body.
type sdpFrag struct {
	ufrag, pwd string
	cands      []webrtc.ICECandidateInit
}

// parseSDPFrag parses a trickle-ice-sdpfrag body (RFC 8840): the first
// a=ice-ufrag and a=ice-pwd (session or media level) and the a=candidate
// lines, each with the a=mid of its m= section (and the section's index);
// the rest is ignored.
func parseSDPFrag(body string) (sdpFrag, error) {
	var f sdpFrag
	mid := ""
	section := -1
	for _, line := range strings.Split(body, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "m="):
			section++
			mid = ""
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			if f.ufrag == "" {
				f.ufrag = strings.TrimPrefix(line, "a=ice-ufrag:")
			}
		case strings.HasPrefix(line, "a=ice-pwd:"):
			if f.pwd == "" {
				f.pwd = strings.TrimPrefix(line, "a=ice-pwd:")
			}
		case strings.HasPrefix(line, "a=mid:"):
			mid = strings.TrimPrefix(line, "a=mid:")
		case strings.HasPrefix(line, "a=candidate:"):
			if len(f.cands) == maxFragCandidates {
				return sdpFrag{}, protoErrorf(errBadMessage, "more than %d candidates", maxFragCandidates)
			}
			c := webrtc.ICECandidateInit{Candidate: strings.TrimPrefix(line, "a=")}
			if mid != "" {
				m := mid
				c.SDPMid = &m
			}
			if section >= 0 {
				i := uint16(section)
				c.SDPMLineIndex = &i
			}
			f.cands = append(f.cands, c)
		}
	}
	return f, nil
}

// ifMatch reports whether an If-Match header allows a change of the
// resource whose entity-tag is etag: no header, "*" (also quoted, as in
// drafts of RFC 9725), or a list naming etag (weak or strong).
func ifMatch(header, etag string) bool {
	if strings.TrimSpace(header) == "" {
		return true
	}
	for _, v := range strings.Split(header, ",") {
		v = strings.TrimPrefix(strings.TrimSpace(v), "W/")
		if v == "*" || v == `"*"` || v == etag {
			return true
		}
	}
	return false
}

// newETag returns a fresh entity-tag (quoted) for an ICE session.
func newETag() string { return `"` + newResourceID() + `"` }

// patch applies a PATCH's fragment to m (ifMatchHeader: the request's
// If-Match). For trickled candidates it returns reply ""; for an ICE
// restart the reply fragment and the new ETag. Errors: errETag (412),
// errStaleICE (409), errBadMessage, those of the candidates and of the
// renegotiation (sfu.ErrInvalidSDP, sfu.ErrWrongState, closed sessions).
func (m *mediaSession) patch(f sdpFrag, ifMatchHeader string) (reply, etag string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !ifMatch(ifMatchHeader, m.etag) {
		return "", "", errETag
	}
	if f.ufrag != "" && f.ufrag != m.ufrag {
		for _, u := range m.used {
			if u == f.ufrag {
				return "", "", protoErrorf(errStaleICE, "ice-ufrag %q belongs to an earlier ICE session", truncate(f.ufrag, 32))
			}
		}
		if f.pwd == "" {
			return "", "", protoErrorf(errBadMessage, "new ice-ufrag without ice-pwd (an ICE restart needs both)")
		}
		// pion cannot roll back an offer it refused (sfu.Viewer.Renegotiate):
		// what it could refuse is checked before.
		for _, c := range f.cands {
			if _, err := ice.UnmarshalCandidate(strings.TrimPrefix(c.Candidate, "candidate:")); err != nil {
				return "", "", protoErrorf(errBadMessage, "restart candidate: %v", err)
			}
		}
		return m.restartICE(f)
	}
	for _, cand := range f.cands {
		if err := m.addCandidate(cand); err != nil {
			return "", "", err
		}
	}
	return "", "", nil
}

// restartICE restarts the session's ICE with the client's new credentials
// and candidates f. m.mu is held.
func (m *mediaSession) restartICE(f sdpFrag) (reply, etag string, err error) {
	offer, err := restartOffer(m.offer, f)
	if err != nil {
		return "", "", err
	}
	desc := webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}
	var answer webrtc.SessionDescription
	if m.viewer != nil {
		answer, err = m.viewer.Renegotiate(desc)
	} else {
		answer, err = m.part.Publish(desc)
	}
	if err != nil {
		return "", "", err
	}
	reply, err = answerFrag(answer.SDP)
	if err != nil {
		return "", "", err
	}
	m.used = append(m.used, m.ufrag)
	if len(m.used) > maxUsedUfrags {
		m.used = m.used[1:]
	}
	m.ufrag, m.offer, m.etag = f.ufrag, offer, newETag()
	return reply, m.etag, nil
}

// restartOffer returns the client's offer prev with f's ICE credentials
// in place of the old ones and f's candidates in place of the old
// candidates (each in the m= section of its mid, else of its index, else
// the first: with BUNDLE the first section carries the transport).
func restartOffer(prev string, f sdpFrag) (string, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(prev); err != nil {
		return "", protoErrorf(errBadMessage, "the session's offer does not parse: %v", err)
	}
	sd.Attributes = replaceICE(sd.Attributes, f)
	for i, md := range sd.MediaDescriptions {
		md.Attributes = replaceICE(md.Attributes, f)
		mid, _ := md.Attribute("mid")
		for _, c := range f.cands {
			var ok bool
			switch {
			case c.SDPMid != nil:
				ok = *c.SDPMid == mid
			case c.SDPMLineIndex != nil:
				ok = int(*c.SDPMLineIndex) == i
			default:
				ok = i == 0
			}
			if ok {
				md.Attributes = append(md.Attributes, sdp.NewAttribute("candidate", strings.TrimPrefix(c.Candidate, "candidate:")))
			}
		}
	}
	out, err := sd.Marshal()
	if err != nil {
		return "", protoErrorf(errBadMessage, "restart offer: %v", err)
	}
	return string(out), nil
}

// replaceICE returns attrs with f's ice-ufrag and ice-pwd and without
// candidates.
func replaceICE(attrs []sdp.Attribute, f sdpFrag) []sdp.Attribute {
	out := make([]sdp.Attribute, 0, len(attrs))
	for _, a := range attrs {
		switch a.Key {
		case "ice-ufrag":
			a.Value = f.ufrag
		case "ice-pwd":
			a.Value = f.pwd
		case "candidate", "end-of-candidates":
			continue
		}
		out = append(out, a)
	}
	return out
}

// answerFrag returns the ICE part of an answer as the fragment of a
// successful restart: ice-lite and ice-options as in the answer, the new
// ice-ufrag and ice-pwd, and the first m= section (the BUNDLE transport)
// with its mid and candidates.
func answerFrag(answer string) (string, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(answer); err != nil || len(sd.MediaDescriptions) == 0 {
		return "", protoErrorf(errBadMessage, "restart answer without media: %v", err)
	}
	md := sd.MediaDescriptions[0]
	attr := func(key string) (string, bool) {
		if v, ok := md.Attribute(key); ok {
			return v, true
		}
		return sd.Attribute(key)
	}
	var b strings.Builder
	if _, ok := attr("ice-lite"); ok {
		b.WriteString("a=ice-lite\r\n")
	}
	if v, ok := attr("ice-options"); ok {
		b.WriteString("a=ice-options:" + v + "\r\n")
	}
	ufrag, _ := attr("ice-ufrag")
	pwd, _ := attr("ice-pwd")
	b.WriteString("a=ice-ufrag:" + ufrag + "\r\na=ice-pwd:" + pwd + "\r\n")
	b.WriteString("m=" + md.MediaName.String() + "\r\n")
	if mid, ok := md.Attribute("mid"); ok {
		b.WriteString("a=mid:" + mid + "\r\n")
	}
	for _, a := range md.Attributes {
		if a.Key == "candidate" {
			b.WriteString("a=candidate:" + a.Value + "\r\n")
		}
	}
	b.WriteString("a=end-of-candidates\r\n")
	return b.String(), nil
}
