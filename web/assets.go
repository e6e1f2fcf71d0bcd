package web

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"net/http"
	"path"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/confab/confab/static"
)

// assets serves the embedded static files. Every file gets a strong ETag
// (content hash) computed once in New, and Cache-Control "no-cache": the
// browser keeps a copy but revalidates it, getting a cheap 304 while the
// binary (and so the file) is unchanged. Immutable after loadAssets.
type assets struct {
	etags map[string]string // path within static.FS -> quoted ETag
}

func loadAssets() (*assets, error) {
	a := &assets{etags: map[string]string{}}
	err := fs.WalkDir(static.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(static.FS, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		a.etags[p] = `"` + hex.EncodeToString(sum[:12]) + `"`
		return nil
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// handleStatic serves GET /static/* from static.FS.
func (s *Server) handleStatic(c echo.Context) error {
	name := path.Clean("/" + c.Param("*"))[1:]
	etag, ok := s.assets.etags[name]
	if !ok {
		return echo.NewHTTPError(http.StatusNotFound)
	}
	f, err := static.FS.Open(name)
	if err != nil {
		return echo.NewHTTPError(http.StatusNotFound)
	}
	defer f.Close()
	rs, ok := f.(io.ReadSeeker)
	if !ok {
		return echo.NewHTTPError(http.StatusInternalServerError)
	}
	h := c.Response().Header()
	h.Set(echo.HeaderCacheControl, "no-cache")
	h.Set("ETag", etag)
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(c.Response(), c.Request(), name, time.Time{}, rs)
	return nil
}
