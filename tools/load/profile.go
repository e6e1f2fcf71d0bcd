package load

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Bounds of the profile fetch.
const (
	// profileSlack is how long the fetch may take beyond the profile's own
	// duration (the node writes the profile after the sampling ends).
	profileSlack = 30 * time.Second
	// maxProfileBytes caps the profile read from the node.
	maxProfileBytes = 64 << 20
	// maxErrorBody caps the part of an error answer quoted in the error.
	maxErrorBody = 512
)

// profileSeconds is the length of the profile taken over a window of d:
// d in whole seconds, at least 1.
func profileSeconds(d time.Duration) int {
	return max(1, int(d/time.Second))
}

// profiler fetches a CPU profile of a node while the window runs. It is
// owned by measure, which waits for it.
type profiler struct {
	done chan struct{}
	err  error // set before done is closed
}

// startProfile starts fetching a profile as long as the window, when
// cfg.ProfileURL is set; nil otherwise.
func (r *runner) startProfile(ctx context.Context) *profiler {
	if r.cfg.ProfileURL == "" {
		return nil
	}
	p := &profiler{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.err = FetchProfile(ctx, r.cfg.ProfileURL, profileSeconds(r.cfg.Duration), r.cfg.ProfileOut)
	}()
	return p
}

// wait waits for the fetch and returns its error (nil for a nil profiler).
func (p *profiler) wait() error {
	if p == nil {
		return nil
	}
	<-p.done
	return p.err
}

// FetchProfile takes a CPU profile of seconds from the net/http/pprof
// server at baseURL (GET baseURL/debug/pprof/profile?seconds=N) and writes
// it to out. The fetch is bounded by ctx and by seconds plus a slack; out is
// only created when the whole profile arrived.
func FetchProfile(ctx context.Context, baseURL string, seconds int, out string) error {
	u := strings.TrimRight(baseURL, "/") + fmt.Sprintf("/debug/pprof/profile?seconds=%d", seconds)
	ctx, cancel := context.WithTimeout(ctx, time.Duration(seconds)*time.Second+profileSlack)
	defer cancel()
	body, err := get(ctx, u)
	if err != nil {
		return fmt.Errorf("load: pprof: %w", err)
	}
	if err := writeFileAtomic(out, body, 0o644); err != nil {
		return fmt.Errorf("load: pprof: %w", err)
	}
	return nil
}

// get returns the body of a 200 answer to GET u, read up to
// maxProfileBytes, on a connection of its own that is closed afterwards.
func get(ctx context.Context, u string) ([]byte, error) {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	res, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(res.Body, maxErrorBody))
		return nil, fmt.Errorf("GET %s: %s: %s", u, res.Status, strings.TrimSpace(string(msg)))
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxProfileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: read body: %w", u, err)
	}
	if len(body) > maxProfileBytes {
		return nil, fmt.Errorf("GET %s: body larger than %d bytes", u, maxProfileBytes)
	}
	if len(body) == 0 {
		return nil, fmt.Errorf("GET %s: empty body", u)
	}
	return body, nil
}

// writeFileAtomic writes data to a temporary file next to path and renames
// it to path with mode, so that path is either the old file or the whole
// new one.
func writeFileAtomic(path string, data []byte, mode os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			os.Remove(f.Name())
		}
	}()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), mode)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
