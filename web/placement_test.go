package web

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
)

// placeScript is a Deps.Place that answers from a table and records the
// requests it saw.
type placeScript struct {
	mu     sync.Mutex
	answer func(req PlaceRequest) (Placement, error)
	reqs   []PlaceRequest
}

func (p *placeScript) place(ctx context.Context, req PlaceRequest) (Placement, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reqs = append(p.reqs, req)
	return p.answer(req)
}

func (p *placeScript) last() PlaceRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reqs[len(p.reqs)-1]
}

// TestJoinPlacement: the join asks Deps.Place; another node gives "move"
// (reason placement or node-full) instead of "joined" and the connection
// stays unjoined; this node joins; ErrClusterFull is "node-full"; other
// failures join here; "placed" and "avoid" reach Deps.Place.
func TestJoinPlacement(t *testing.T) {
	other := Peer{ID: "n2", URL: "http://127.0.0.2:8082"}
	tests := []struct {
		name       string
		join       map[string]any
		answer     Placement
		err        error
		wantMove   string // reason; "" when joined or refused
		wantCode   string // error code; "" when not refused
		wantPlaced bool
		wantAvoid  []string
	}{
		{name: "here", join: map[string]any{}, answer: Placement{Node: Peer{ID: "test-node"}, Local: true}},
		{name: "room elsewhere", join: map[string]any{}, answer: Placement{Node: other, Reason: "serves-room"}, wantMove: moveReasonPlacement},
		{name: "this node full", join: map[string]any{}, answer: Placement{Node: other, Reason: "least-loaded", Full: true}, wantMove: moveReasonNodeFull},
		{name: "cluster full", join: map[string]any{}, err: fmt.Errorf("%w: all of them", ErrClusterFull), wantCode: codeNodeFull},
		{name: "placement broken: join here", join: map[string]any{}, err: errors.New("consul exploded")},
		{name: "placed here", join: map[string]any{"placed": "test-node"}, answer: Placement{Local: true}, wantPlaced: true},
		{name: "placed on another node is not placed here", join: map[string]any{"placed": "n9"}, answer: Placement{Local: true}},
		{name: "avoid passed on, bounded", join: map[string]any{"avoid": []string{"n1", "", "n3"}}, answer: Placement{Local: true}, wantAvoid: []string{"n1", "n3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			script := &placeScript{answer: func(PlaceRequest) (Placement, error) { return tt.answer, tt.err }}
			env := newEnv(t, envOptions{deps: Deps{Place: script.place}})
			c := env.mustDial("placed")
			msg := map[string]any{"v": 1, "type": "join", "name": "Ann"}
			for k, v := range tt.join {
				msg[k] = v
			}
			c.send(msg)
			switch {
			case tt.wantMove != "":
				m := c.expectMove()
				if m.Reason != tt.wantMove || !reflect.DeepEqual(m.Nodes, []Peer{other}) || m.Message == "" {
					t.Fatalf("move = %+v, want reason %s to %v", m, tt.wantMove, other)
				}
				if n := localParticipants(env.engine, "placed"); n != 0 {
					t.Fatalf("%d participants joined here after a move", n)
				}
				// Still unjoined: anything but join is refused.
				c.send(map[string]any{"v": 1, "type": "ping"})
				c.expectError(codeNotJoined)
			case tt.wantCode != "":
				c.expectError(tt.wantCode)
			default:
				c.expect(typeJoined)
			}
			req := script.last()
			if req.Room != "placed" || req.Placed != tt.wantPlaced || !reflect.DeepEqual(req.Avoid, tt.wantAvoid) {
				t.Fatalf("Place saw %+v, want room placed, placed %v, avoid %v", req, tt.wantPlaced, tt.wantAvoid)
			}
		})
	}
}
