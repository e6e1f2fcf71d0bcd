package web

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestMeetingVersion3: media state and chat over the wire: a joiner's
// state is in participant-joined, a change reaches the others as
// participant-updated, chat reaches everyone (the sender too) with the
// sender's name, a later joiner gets the history in "joined", refusals
// carry their own codes, and version 2 sessions see none of it.
func TestMeetingVersion3(t *testing.T) {
	env := newEnv(t, envOptions{})
	alice, _ := env.joinVersion("meet", "Alice", protocolV3)
	old, _ := env.joinVersion("meet", "Old", protocolV2)
	if pj := alice.expect(typeParticipantJoined); pj.Participant == nil || pj.Participant.Name != "Old" {
		t.Fatalf("alice's first participant-joined = %+v", pj.Participant)
	}
	bob := env.mustDial("meet")
	bob.v = protocolV3
	bob.send(map[string]any{"v": 3, "type": "join", "name": "Bob", "audioMuted": true})
	joined := bob.expect(typeJoined)
	if len(joined.Participants) != 2 {
		t.Fatalf("bob's joined lists %d participants, want 2", len(joined.Participants))
	}
	pj := alice.expect(typeParticipantJoined)
	if pj.Participant == nil || pj.Participant.Name != "Bob" || !pj.Participant.AudioMuted {
		t.Errorf("alice's participant-joined = %+v, want Bob muted", pj.Participant)
	}

	bob.send(map[string]any{"v": 3, "type": "media-state", "audioMuted": false, "videoMuted": true})
	up := alice.expect(typeParticipantUpdated)
	if up.Participant == nil || up.Participant.AudioMuted || !up.Participant.VideoMuted {
		t.Errorf("participant-updated = %+v, want video muted only", up.Participant)
	}

	const xss = "<img src=x onerror=alert(1)>"
	alice.send(map[string]any{"v": 3, "type": "chat", "text": xss})
	for _, c := range []*wsClient{alice, bob} {
		m := c.expect(typeChat)
		var w wireChat
		if err := json.Unmarshal(m.Chat, &w); err != nil || w.Text != xss || w.Name != "Alice" || w.ID == "" || w.At == 0 {
			t.Errorf("chat = %s (%v)", m.Chat, err)
		}
	}
	bob.send(map[string]any{"v": 3, "type": "chat", "text": strings.Repeat("x", 2049)})
	bob.expectError(codeChatTooLong)
	bob.send(map[string]any{"v": 3, "type": "chat", "text": "   "})
	bob.expectError(codeChatInvalid)
	old.send(map[string]any{"v": 2, "type": "chat", "text": "hi"})
	old.expectError(codeUnknownType)

	carol, cj := env.joinVersion("meet", "Carol", protocolV3)
	var hist []wireChat
	if err := json.Unmarshal(cj.Chat, &hist); err != nil || len(hist) != 1 || hist[0].Text != xss {
		t.Errorf("carol's history = %s (%v), want alice's message", cj.Chat, err)
	}
	_ = carol

	// The version 2 session saw neither updates nor chat, and no state fields.
	old.send(map[string]any{"v": 2, "type": "ping"})
	for {
		m, err := old.read()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if m.Type == typeParticipantUpdated || m.Type == typeChat {
			t.Errorf("version 2 session got %q", m.Type)
		}
		if m.Participant != nil && (m.Participant.AudioMuted || m.Participant.VideoMuted) {
			t.Errorf("version 2 session got media state: %+v", m.Participant)
		}
		if m.Type == typePong {
			break
		}
	}
}

// TestMaxProtocol: a node held at version 2 refuses a version 3 join with
// unsupported-version (the page then joins with version 2) and takes the
// same join in version 2.
func TestMaxProtocol(t *testing.T) {
	env := newEnv(t, envOptions{cfg: Config{MaxProtocol: protocolV2}})
	c := env.mustDial("old")
	c.v = protocolV3
	c.send(map[string]any{"v": 3, "type": "join", "name": "Al"})
	if m := c.expectError(codeUnsupportedVersion); !strings.Contains(m.Message, "versions 1 to 2") {
		t.Errorf("message %q does not name the versions the node speaks", m.Message)
	}
	c.v = protocolV2
	c.send(map[string]any{"v": 2, "type": "join", "name": "Al"})
	c.expect(typeJoined)
}
