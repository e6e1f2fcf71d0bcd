// Package static holds confab's browser assets: plain ES modules under js/
// (no build step) and the stylesheet under css/. Package web serves FS at
// /static/ (e.g. /static/js/room.js); templates reference those paths.
package static

import "embed"

// FS is the read-only tree of embedded assets, rooted at this directory:
// js/*.js and css/*.css. It is immutable and safe for concurrent use.
//
//go:embed js/*.js css/*.css icons/*.svg
var FS embed.FS
