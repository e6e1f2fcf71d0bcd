package web

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of user-chosen names.
const (
	maxRoomNameLen    = 64
	maxDisplayNameLen = 64 // runes, after trimming
)

// validRoomName reports whether room matches ^[A-Za-z0-9_-]{1,64}$.
func validRoomName(room string) bool {
	if len(room) == 0 || len(room) > maxRoomNameLen {
		return false
	}
	for i := 0; i < len(room); i++ {
		c := room[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// Display name problems, wrapped by normalizeDisplayName.
var (
	errNameEmpty   = errors.New("name is empty")
	errNameLong    = errors.New("name is longer than 64 characters")
	errNameControl = errors.New("name contains control characters")
	errNameUTF8    = errors.New("name is not valid UTF-8")
)

// normalizeDisplayName trims surrounding white space and checks that the
// result has 1-64 characters (runes), is valid UTF-8 and has no control
// characters (C0, DEL, C1) nor bidirectional embedding/override/isolate
// characters (which allow spoofing other names).
func normalizeDisplayName(name string) (string, error) {
	if !utf8.ValidString(name) {
		return "", errNameUTF8
	}
	name = strings.TrimSpace(name)
	n := utf8.RuneCountInString(name)
	switch {
	case n == 0:
		return "", errNameEmpty
	case n > maxDisplayNameLen:
		return "", errNameLong
	}
	for _, r := range name {
		if unicode.IsControl(r) || isBidiControl(r) {
			return "", errNameControl
		}
	}
	return name, nil
}

// isBidiControl reports the explicit directional formatting characters
// U+202A-U+202E and U+2066-U+2069.
func isBidiControl(r rune) bool {
	return (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069)
}
