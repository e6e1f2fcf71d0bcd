package web

import (
	"encoding/json"
	"fmt"
	"testing"
)

// TestJoinedICEServers: "joined" carries Deps.ICEServers of the joining
// participant from protocol version 4 on; versions 1 to 3 carry no
// "iceServers" (their "joined" is unchanged), nor does version 4 without
// the dependency.
func TestJoinedICEServers(t *testing.T) {
	servers := func(id string) []ICEServer {
		return []ICEServer{{URLs: []string{"turn:192.0.2.1:3478?transport=tcp"}, Username: "1700000000:" + id, Credential: "c-" + id}}
	}
	for _, tc := range []struct {
		name string
		deps func(string) []ICEServer
		v    int
		want bool
	}{
		{"v1", servers, protocolV1, false},
		{"v2", servers, protocolV2, false},
		{"v3", servers, protocolV3, false},
		{"v4", servers, protocolV4, true},
		{"v4 without TURN", nil, protocolV4, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t, envOptions{deps: Deps{ICEServers: tc.deps}})
			_, joined := env.joinVersion("reach", "Al", tc.v)
			if !tc.want {
				if joined.ICEServers != nil {
					t.Fatalf("joined (v%d) has iceServers %s, want none", tc.v, joined.ICEServers)
				}
				return
			}
			var got []ICEServer
			if err := json.Unmarshal(joined.ICEServers, &got); err != nil {
				t.Fatalf("iceServers %s: %v", joined.ICEServers, err)
			}
			want := servers(joined.ParticipantID)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("iceServers = %+v, want %+v (the joining participant's)", got, want)
			}
			var raw []map[string]any
			_ = json.Unmarshal(joined.ICEServers, &raw)
			for _, key := range []string{"urls", "username", "credential"} {
				if _, ok := raw[0][key]; !ok {
					t.Errorf("iceServers[0] has no %q: %s", key, joined.ICEServers)
				}
			}
		})
	}
}
