// Package templates renders confab's HTML pages (templ components). It is
// leaf presentation code: handlers in package web pass plain view structs
// and render the returned templ.Component; nothing here does I/O of its own.
//
// The *_templ.go files are generated from the *.templ files with
// `go tool templ generate -path templates` and are committed.
package templates

import "strings"

// RoomNameRule describes a valid room name; shown on the 400 page and in
// form hints.
const RoomNameRule = "1-64 letters, digits, - or _"

// LobbyPage is the view model of the lobby (GET /).
type LobbyPage struct {
	// Room and Name pre-fill the form (after a rejected submission).
	Room string
	Name string
	// Error is shown above the form when non-empty.
	Error string
}

// RoomPage is the view model of a room page (GET /rooms/{room}).
type RoomPage struct {
	// Room is the (already validated) room name.
	Room string
	// NodeID is the id of the node serving the page.
	NodeID string
	// Name is the validated display name from ?name=. When empty the page
	// shows a small form asking for a name instead of joining.
	Name string
	// NameError explains why a given ?name was rejected ("" when none).
	NameError string
	// Token is the access token of the link (token auth), kept by the
	// name form.
	Token string
}

// ErrorPage is the view model of an error page.
type ErrorPage struct {
	// Status is the HTTP status code, shown as the heading.
	Status int
	// Message is the human-readable explanation.
	Message string
}

// roomURL is the path of a room page. room must be a valid room name (so
// it needs no escaping).
func roomURL(room string) string { return "/rooms/" + room }

// initial is the upper-cased first letter of name, shown as an avatar.
func initial(name string) string {
	for _, r := range name {
		return strings.ToUpper(string(r))
	}
	return "?"
}

// WatchPage is the view model of a room's watch page (GET
// /rooms/{room}/watch).
type WatchPage struct {
	// Room is the (already validated) room name.
	Room string
	// NodeID is the id of the node serving the page.
	NodeID string
}
