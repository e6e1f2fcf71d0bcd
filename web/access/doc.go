// Package access holds confab's access tokens: JSON Web Tokens (HS256)
// signed with one of several API keys, each named by a key id ("kid") so
// that keys can be rotated. A token names one room, an identity, a display
// name, an expiry and what its holder may do there (Grants).
//
// The package only signs and checks tokens; package web decides what a
// grant allows, and only app reads the API keys file (ParseKeys parses
// its contents).
package access
