package web

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/confab/confab/web/access"
)

const testAPIKeys = "k1 test-key-one-0123456789abcdef0123456789\nk2 test-key-two-0123456789abcdef0123456789\n"

// tokenEnv starts a server with token auth.
func tokenEnv(t *testing.T) (*testEnv, access.KeySet) {
	t.Helper()
	keys, err := access.ParseKeys([]byte(testAPIKeys))
	if err != nil {
		t.Fatal(err)
	}
	return newEnv(t, envOptions{cfg: Config{Auth: AuthToken, Keys: keys}}), keys
}

// mint makes a token of key k2 for room, identity and grants, valid for ttl.
func mint(t *testing.T, keys access.KeySet, room, identity, name string, ttl time.Duration, grants string) string {
	t.Helper()
	g, err := access.ParseGrants(grants)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := access.Mint(keys, "k2", access.Claims{Room: room, Name: name, Grants: g, RegisteredClaims: jwt.RegisteredClaims{
		Subject: identity, ExpiresAt: jwt.NewNumericDate(time.Now().Add(ttl)),
	}})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// joinToken joins room with a version 4 join carrying token.
func (env *testEnv) joinToken(room, name, token string) *wsClient {
	env.t.Helper()
	c := env.mustDial(room)
	c.v = protocolV4
	c.send(map[string]any{"v": protocolV4, "type": "join", "name": name, "token": token})
	return c
}

// TestTokenJoin: with token auth a join needs a valid token for its room;
// each refusal has its own code; a good token's name, identity and
// grants are used and told to the client.
func TestTokenJoin(t *testing.T) {
	env, keys := tokenEnv(t)
	other, err := access.ParseKeys([]byte("k2 some-other-secret-0123456789abcdef01234"))
	if err != nil {
		t.Fatal(err)
	}
	forged, err := access.Mint(other, "k2", access.Claims{Room: "r", RegisteredClaims: jwt.RegisteredClaims{
		Subject: "mallory", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		token string
		code  string
	}{
		{"no token", "", codeTokenRequired},
		{"garbage", "abc.def.ghi", codeTokenInvalid},
		{"forged", forged, codeTokenInvalid},
		{"expired", mint(t, keys, "r", "alice", "Alice", -time.Minute, "publish"), codeTokenExpired},
		{"other room", mint(t, keys, "elsewhere", "alice", "Alice", time.Hour, "publish"), codeTokenWrongRoom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := env.joinToken("r", "Alice", tt.token)
			m := c.expectError(tt.code)
			if m.Message == "" || strings.Contains(m.Message, "test-key") {
				t.Errorf("message = %q", m.Message)
			}
		})
	}
	t.Run("version 3 join", func(t *testing.T) {
		c := env.mustDial("r")
		c.v = protocolV3
		c.send(map[string]any{"v": 3, "type": "join", "name": "Old"})
		c.expectError(codeTokenRequired)
	})
	t.Run("good", func(t *testing.T) {
		c := env.joinToken("r", "typed name", mint(t, keys, "r", "alice", "Alice", time.Hour, "publish:camera,subscribe"))
		j := c.expect(typeJoined)
		if j.Identity != "alice" || j.Grants == nil || !j.Grants.Publish || !j.Grants.Subscribe || j.Grants.Chat || j.Grants.Admin ||
			strings.Join(j.Grants.Sources, ",") != "camera" {
			t.Errorf("joined = %+v, grants %+v", j, j.Grants)
		}
		if got := env.engine.Room("r").Participants(); len(got) != 1 || got[0].Name != "Alice" {
			t.Errorf("room lists %+v, want the token's name Alice", got)
		}
	})
}

// TestTokenGrants: publishing, its sources and chat follow the grants.
func TestTokenGrants(t *testing.T) {
	env, keys := tokenEnv(t)
	offer := pionOffer(t) // mid 0 video, mid 1 audio
	publish := func(c *wsClient, sources map[string]string) {
		c.send(map[string]any{"v": protocolV4, "type": "publish", "sdp": map[string]string{"type": "offer", "sdp": offer}, "sources": sources})
	}
	viewer := env.joinToken("g", "", mint(t, keys, "g", "v", "Viewer", time.Hour, "subscribe"))
	viewer.expect(typeJoined)
	publish(viewer, nil)
	viewer.expectError(codeForbidden)
	viewer.send(map[string]any{"v": protocolV4, "type": "chat", "text": "hi"})
	viewer.expectError(codeForbidden)

	cam := env.joinToken("g", "", mint(t, keys, "g", "c", "Cam", time.Hour, "publish:camera,chat"))
	cam.expect(typeJoined)
	publish(cam, nil) // the audio m-line is a microphone
	cam.expectError(codeForbidden)
	publish(cam, map[string]string{"0": "camera", "1": "camera"}) // an audio m-line is no camera
	cam.expectError(codeForbidden)
	cam.send(map[string]any{"v": protocolV4, "type": "chat", "text": "hi"})
	cam.expect(typeChat)

	full := env.joinToken("g", "", mint(t, keys, "g", "f", "Full", time.Hour, "publish,subscribe"))
	full.expect(typeJoined)
	publish(full, map[string]string{"0": "camera", "1": "microphone"})
	full.expect(typePublishAnswer)

	// Hidden drops publish: a hidden participant's media would show it.
	ghost := env.joinToken("g", "", mint(t, keys, "g", "h", "Ghost", time.Hour, "hidden,publish,subscribe"))
	ghost.expect(typeJoined)
	publish(ghost, nil)
	ghost.expectError(codeForbidden)
	for _, p := range env.engine.Room("g").Participants() {
		if p.Name == "Ghost" {
			t.Errorf("the hidden participant is listed: %+v", p)
		}
	}
}

// TestTokenReplaces: the same identity joining again ends the older
// session, which is told why ("replaced").
func TestTokenReplaces(t *testing.T) {
	env, keys := tokenEnv(t)
	tok := mint(t, keys, "rep", "alice", "Alice", time.Hour, "subscribe")
	first := env.joinToken("rep", "", tok)
	first.expect(typeJoined)
	second := env.joinToken("rep", "", tok)
	second.expect(typeJoined)
	first.expectError(codeReplaced)
	first.expectClose()
	if n := localParticipants(env.engine, "rep"); n != 1 {
		t.Errorf("%d participants in the room, want 1", n)
	}
}

// TestTokenPages: the room page and the cluster API need tokens.
func TestTokenPages(t *testing.T) {
	env, keys := tokenEnv(t)
	admin := mint(t, keys, access.AnyRoom, "ops", "", time.Hour, "admin")
	roomAdmin := mint(t, keys, "r", "ops", "", time.Hour, "admin")
	tests := []struct {
		name, path, auth string
		status           int
		body             string
	}{
		{"page without token", "/rooms/r", "", http.StatusUnauthorized, "needs an access token"},
		{"page, expired token", "/rooms/r?token=" + mint(t, keys, "r", "a", "A", -time.Minute, "subscribe"), "", http.StatusUnauthorized, "expired"},
		{"page, other room", "/rooms/r?token=" + mint(t, keys, "x", "a", "A", time.Hour, "subscribe"), "", http.StatusForbidden, "another room"},
		{"page with a named token", "/rooms/r?token=" + mint(t, keys, "r", "a", "Alice A", time.Hour, "subscribe"), "", http.StatusOK, `data-name="Alice A"`},
		{"page with an unnamed token asks for a name", "/rooms/r?token=" + mint(t, keys, "r", "a", "", time.Hour, "subscribe"), "", http.StatusOK, `data-testid="name-prompt"`},
		{"cluster API anonymous", "/api/cluster", "", http.StatusUnauthorized, "token-required"},
		{"cluster API, room admin", "/api/cluster", "Bearer " + roomAdmin, http.StatusForbidden, "forbidden"},
		{"cluster API, admin", "/api/cluster", "Bearer " + admin, http.StatusOK, "test-node"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := http.Header{}
			if tt.auth != "" {
				hdr.Set("Authorization", tt.auth)
			}
			status, _, body := env.get(tt.path, hdr)
			if status != tt.status || !strings.Contains(body, tt.body) {
				t.Errorf("GET %s = %d %q, want %d with %q", tt.path, status, body, tt.status, tt.body)
			}
			if status != http.StatusOK && strings.Contains(body, "test-node") {
				t.Errorf("a refusal shows the cluster document")
			}
		})
	}
}

// TestModerateWire: admins mute, lock, remove and end over the wire; the
// others cannot; each affected client is told why.
func TestModerateWire(t *testing.T) {
	env, keys := tokenEnv(t)
	const room = "mod"
	join := func(identity, name, grants string) (*wsClient, testMsg) {
		t.Helper()
		c := env.joinToken(room, "", mint(t, keys, room, identity, name, time.Hour, grants))
		return c, c.expect(typeJoined)
	}
	admin, _ := join("adm", "Admin", "admin,subscribe")
	alice, aj := join("alice", "Alice", "publish,subscribe,chat")
	bob, _ := join("bob", "Bob", "publish,subscribe,chat")
	moderate := func(c *wsClient, fields map[string]any) {
		msg := map[string]any{"v": protocolV4, "type": "moderate"}
		for k, v := range fields {
			msg[k] = v
		}
		c.send(msg)
	}

	moderate(alice, map[string]any{"action": "lock"})
	alice.expectError(codeForbidden)
	for _, bad := range []map[string]any{
		{"action": "ban", "participantId": aj.ParticipantID},
		{"action": "remove"},
		{"action": "mute", "participantId": aj.ParticipantID, "kind": "screen"},
		{"action": "remove", "participantId": "nobody"},
	} {
		moderate(admin, bad)
		admin.expectError(codeBadMessage)
	}

	moderate(admin, map[string]any{"action": "mute", "participantId": aj.ParticipantID, "kind": "audio"})
	if m := alice.expect(typeModerated); m.Moderation == nil || m.Moderation.Action != "mute" || m.Moderation.Kind != "audio" || m.Moderation.By != "Admin" {
		t.Errorf("alice's moderated = %+v", m.Moderation)
	}
	if up := bob.expect(typeParticipantUpdated); up.Participant == nil || up.Participant.Name != "Alice" || !up.Participant.AudioMuted {
		t.Errorf("bob's participant-updated = %+v", up.Participant)
	}

	moderate(admin, map[string]any{"action": "lock"})
	for _, c := range []*wsClient{admin, alice, bob} {
		if m := c.expect(typeModerated); m.Moderation == nil || m.Moderation.Action != "lock" {
			t.Errorf("moderated = %+v, want lock", m.Moderation)
		}
	}
	carol := env.joinToken(room, "", mint(t, keys, room, "carol", "Carol", time.Hour, "subscribe"))
	carol.expectError(codeRoomLocked)
	_, oj := join("op", "Op", "admin,subscribe")
	if !oj.Locked {
		t.Error("an admin joining a locked room is not told it is locked")
	}

	bj := bob
	moderate(admin, map[string]any{"action": "remove", "participantId": participantID(t, env, room, "Bob")})
	bj.expectError(codeRemoved)
	bj.expectClose()

	moderate(admin, map[string]any{"action": "end"})
	alice.expectError(codeRoomEnded)
	alice.expectClose()
	again := env.joinToken(room, "", mint(t, keys, room, "alice", "Alice", time.Hour, "subscribe"))
	again.expectError(codeRoomEnded)
}

// participantID returns the id of the participant called name in room.
func participantID(t *testing.T, env *testEnv, room, name string) string {
	t.Helper()
	for _, p := range env.engine.Room(room).Participants() {
		if p.Name == name {
			return p.ID
		}
	}
	t.Fatalf("no participant %s in room %s", name, room)
	return ""
}
