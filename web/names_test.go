package web

import (
	"errors"
	"strings"
	"testing"
)

func TestValidRoomName(t *testing.T) {
	tests := []struct {
		room string
		want bool
	}{
		{"a", true},
		{"Z9", true},
		{"team-standup_2", true},
		{strings.Repeat("x", 64), true},
		{"", false},
		{strings.Repeat("x", 65), false},
		{"has space", false},
		{"dot.ted", false},
		{"slash/ed", false},
		{"café", false},
		{"null\x00", false},
	}
	for _, tt := range tests {
		if got := validRoomName(tt.room); got != tt.want {
			t.Errorf("validRoomName(%q) = %v, want %v", tt.room, got, tt.want)
		}
	}
}

func TestNormalizeDisplayName(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr error
	}{
		{in: "Alice", want: "Alice"},
		{in: "  Bob  ", want: "Bob"},
		{in: "Zoë 🎉", want: "Zoë 🎉"},
		{in: "👩‍💻 dev", want: "👩‍💻 dev"}, // ZWJ sequences stay allowed
		{in: strings.Repeat("é", 64), want: strings.Repeat("é", 64)},
		{in: "", wantErr: errNameEmpty},
		{in: " \t\n ", wantErr: errNameEmpty},
		{in: strings.Repeat("é", 65), wantErr: errNameLong},
		{in: "a\x00b", wantErr: errNameControl},
		{in: "bell\a", wantErr: errNameControl},
		{in: "del\x7f", wantErr: errNameControl},
		{in: "c1\u0085x", wantErr: errNameControl},
		{in: "evil\u202Eexe.txt", wantErr: errNameControl},
		{in: "bad\xffutf8", wantErr: errNameUTF8},
	}
	for _, tt := range tests {
		got, err := normalizeDisplayName(tt.in)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("normalizeDisplayName(%q) error = %v, want %v", tt.in, err, tt.wantErr)
			continue
		}
		if got != tt.want {
			t.Errorf("normalizeDisplayName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
