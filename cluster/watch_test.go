package cluster

import (
	"context"
	"errors"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

func TestNextIndex(t *testing.T) {
	tests := []struct {
		name        string
		prev, got   uint64
		first       bool
		wantNext    uint64
		wantChanged bool
	}{
		{name: "first result", prev: 0, got: 7, first: true, wantNext: 7, wantChanged: true},
		{name: "first result same index", prev: 0, got: 0, first: true, wantNext: 1, wantChanged: true},
		{name: "timeout, unchanged", prev: 7, got: 7, wantNext: 7, wantChanged: false},
		{name: "new data", prev: 7, got: 9, wantNext: 9, wantChanged: true},
		{name: "index went backwards", prev: 9, got: 3, wantNext: 0, wantChanged: true},
		{name: "zero clamped", prev: 0, got: 0, wantNext: 1, wantChanged: true},
		{name: "clamped one stays", prev: 1, got: 0, wantNext: 0, wantChanged: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next, changed := nextIndex(tt.prev, tt.got, tt.first)
			if next != tt.wantNext || changed != tt.wantChanged {
				t.Fatalf("nextIndex(%d, %d, %v) = %d, %v; want %d, %v",
					tt.prev, tt.got, tt.first, next, changed, tt.wantNext, tt.wantChanged)
			}
		})
	}
}

// fakeLister replays scripted List results and records the WaitIndex of
// every call; once the script is exhausted it blocks until the query's
// context ends.
type fakeLister struct {
	mu      sync.Mutex
	script  []fakeResult
	indexes []uint64
	called  chan struct{}
}

type fakeResult struct {
	index uint64
	pairs api.KVPairs
	err   error
	block bool // block until the query's context ends
}

func (f *fakeLister) List(_ string, q *api.QueryOptions) (api.KVPairs, *api.QueryMeta, error) {
	f.mu.Lock()
	f.indexes = append(f.indexes, q.WaitIndex)
	var r *fakeResult
	if len(f.script) > 0 {
		r = &f.script[0]
		f.script = f.script[1:]
	}
	f.mu.Unlock()
	select {
	case f.called <- struct{}{}:
	default:
	}
	if r == nil || r.block {
		<-q.Context().Done()
		return nil, nil, q.Context().Err()
	}
	if r.err != nil {
		return nil, nil, r.err
	}
	return r.pairs, &api.QueryMeta{LastIndex: r.index}, nil
}

func (f *fakeLister) calls() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uint64(nil), f.indexes...)
}

func TestPrefixWatchIndexHandling(t *testing.T) {
	checkLeaks(t)
	pair := func(k string) api.KVPairs { return api.KVPairs{{Key: k}} }
	f := &fakeLister{
		called: make(chan struct{}, 1),
		script: []fakeResult{
			{index: 10, pairs: pair("a")},    // first: delivered
			{index: 10, pairs: pair("a")},    // wait timed out: not delivered
			{err: errors.New("consul down")}, // error: retried with backoff
			{index: 10, pairs: pair("a")},    // non-blocking check after the error: unchanged, not delivered
			{index: 12, pairs: pair("b")},    // blocking again with the kept index; change: delivered
			{err: errors.New("consul down")}, // error again
			{index: 5, pairs: pair("c")},     // non-blocking check: went backwards: delivered, reset to 0
			{index: 6, pairs: pair("c")},     // after the reset: delivered
			{index: 0, pairs: api.KVPairs{}}, // bogus 0: ... index 0 < 6 resets
			{index: 0, pairs: api.KVPairs{}}, // 0 again after reset: clamped to 1
		},
	}
	var mu sync.Mutex
	var got []string
	w := &prefixWatch{kv: f, prefix: "p/", wait: time.Second, timeout: time.Second, maxBackoff: 20 * time.Millisecond, log: testLogger(t)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(ctx, func(p api.KVPairs) {
			mu.Lock()
			defer mu.Unlock()
			if len(p) == 0 {
				got = append(got, "-")
				return
			}
			got = append(got, p[0].Key)
		})
	}()
	tctx := testContext(t)
	waitFor(tctx, t, "script consumed", func() bool { return len(f.calls()) == 11 })
	cancel()
	<-done

	wantIdx := []uint64{0, 10, 10, 0, 10, 12, 0, 0, 6, 0, 1}
	idx := f.calls()
	if len(idx) != len(wantIdx) {
		t.Fatalf("WaitIndex sequence %v, want %v", idx, wantIdx)
	}
	for i := range wantIdx {
		if idx[i] != wantIdx[i] {
			t.Fatalf("WaitIndex sequence %v, want %v", idx, wantIdx)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"a", "b", "c", "c", "-", "-"}
	if len(got) != len(want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delivered %v, want %v", got, want)
		}
	}
}

// TestPrefixWatchRestartSignal: firing the restart signal abandons a
// blocking query in flight and queries again from index 0 at once; the
// result is delivered even if the index is the same as before.
func TestPrefixWatchRestartSignal(t *testing.T) {
	checkLeaks(t)
	f := &fakeLister{
		called: make(chan struct{}, 1),
		script: []fakeResult{
			{index: 10, pairs: api.KVPairs{{Key: "a"}}}, // first: delivered
			{block: true}, // blocking query with index 10, abandoned by the signal
			{index: 10, pairs: api.KVPairs{{Key: "a"}}}, // from index 0 again: delivered
		},
	}
	restart := newRestartSignal()
	defer restart.stop()
	var delivered atomic.Int64
	w := &prefixWatch{kv: f, prefix: "p/", wait: time.Minute, timeout: time.Minute, maxBackoff: 20 * time.Millisecond,
		log: testLogger(t), restart: restart}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(ctx, func(api.KVPairs) { delivered.Add(1) })
	}()
	tctx := testContext(t)
	waitFor(tctx, t, "blocking query in flight", func() bool { return len(f.calls()) == 2 })
	restart.fire()
	waitFor(tctx, t, "query again from 0", func() bool { return len(f.calls()) == 4 })
	cancel()
	<-done
	if got, want := f.calls(), []uint64{0, 10, 0, 10}; !slices.Equal(got, want) {
		t.Errorf("WaitIndex sequence %v, want %v", got, want)
	}
	if n := delivered.Load(); n != 2 {
		t.Errorf("delivered %d results, want 2", n)
	}
}

// TestPrefixWatchConsul watches a prefix of a real agent through puts and
// deletes.
func TestPrefixWatchConsul(t *testing.T) {
	a := consulForTest(t)
	checkLeaks(t)
	ctx := testContext(t)
	kv := a.client.KV()
	latest := make(chan map[string]string, 100)
	w := &prefixWatch{kv: kv, prefix: "confab/watch/", wait: 5 * time.Second, timeout: 5 * time.Second, maxBackoff: time.Second, log: testLogger(t)}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(wctx, func(p api.KVPairs) {
			m := make(map[string]string)
			for _, kv := range p {
				m[kv.Key] = string(kv.Value)
			}
			latest <- m
		})
	}()
	defer func() { cancel(); <-done }()

	expect := func(what string, want map[string]string) {
		t.Helper()
		for {
			select {
			case <-ctx.Done():
				t.Fatalf("timed out waiting for %s", what)
			case m := <-latest:
				if len(m) != len(want) {
					continue
				}
				ok := true
				for k, v := range want {
					if m[k] != v {
						ok = false
					}
				}
				if ok {
					return
				}
			}
		}
	}
	expect("empty prefix", map[string]string{})
	if _, err := kv.Put(&api.KVPair{Key: "confab/watch/a", Value: []byte("1")}, nil); err != nil {
		t.Fatal(err)
	}
	expect("put a", map[string]string{"confab/watch/a": "1"})
	if _, err := kv.Put(&api.KVPair{Key: "confab/watch/b", Value: []byte("2")}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(&api.KVPair{Key: "confab/other", Value: []byte("x")}, nil); err != nil {
		t.Fatal(err)
	}
	expect("put b", map[string]string{"confab/watch/a": "1", "confab/watch/b": "2"})
	if _, err := kv.Delete("confab/watch/a", nil); err != nil {
		t.Fatal(err)
	}
	expect("delete a", map[string]string{"confab/watch/b": "2"})
}

// TestPrefixWatchConsulRestart restarts a dev agent (which loses its data
// and starts its indexes again from 1) under a running watch: the watch
// notices the index going backwards, resets, and keeps following the
// prefix.
func TestPrefixWatchConsulRestart(t *testing.T) {
	checkLeaks(t)
	dir := t.TempDir()
	a, err := startConsulAgent(dir)
	if err != nil {
		t.Fatalf("start consul agent: %v", err)
	}
	t.Cleanup(func() { a.stop() })
	ctx := testContext(t)

	// Push the index well above what a fresh agent reaches quickly.
	for i := 0; i < 60; i++ {
		if _, err := a.client.KV().Put(&api.KVPair{Key: "confab/bump", Value: []byte{byte(i)}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.client.KV().Put(&api.KVPair{Key: "confab/w/before", Value: []byte("1")}, nil); err != nil {
		t.Fatal(err)
	}
	_, meta, err := a.client.KV().List("confab/w/", nil)
	if err != nil {
		t.Fatal(err)
	}
	highIndex := meta.LastIndex

	// The watch uses its own client so that it survives the agent restart.
	reg, err := newRegistry(Config{NodeID: "n", ConsulAddr: a.Addr(), ConsulTimeout: 5 * time.Second, SessionTTL: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.close()
	var mu sync.Mutex
	var seen []map[string]bool
	w := &prefixWatch{kv: reg.kv, prefix: "confab/w/", wait: 2 * time.Second, timeout: 2 * time.Second, maxBackoff: 200 * time.Millisecond, log: testLogger(t)}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(wctx, func(p api.KVPairs) {
			m := make(map[string]bool)
			for _, kv := range p {
				m[kv.Key] = true
			}
			mu.Lock()
			seen = append(seen, m)
			mu.Unlock()
		})
	}()
	defer func() { cancel(); <-done }()
	has := func(key string) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(seen) > 0 && seen[len(seen)-1][key]
		}
	}
	waitFor(ctx, t, "watch sees confab/w/before", has("confab/w/before"))

	// Restart the agent on the same ports: all data and indexes are gone.
	a.stop()
	a2, err := startConsulAgentOn(a.bin, dir, a.ports)
	if err != nil {
		t.Fatalf("restart consul agent: %v", err)
	}
	t.Cleanup(func() { a2.stop() })
	if _, err := a2.client.KV().Put(&api.KVPair{Key: "confab/w/after", Value: []byte("1")}, nil); err != nil {
		t.Fatal(err)
	}
	_, meta2, err := a2.client.KV().List("confab/w/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if meta2.LastIndex >= highIndex {
		t.Fatalf("fresh agent index %d not below the old %d; the test cannot exercise the reset", meta2.LastIndex, highIndex)
	}
	waitFor(ctx, t, "watch sees confab/w/after on the restarted agent", func() bool {
		mu.Lock()
		defer mu.Unlock()
		last := seen[len(seen)-1]
		return last["confab/w/after"] && !last["confab/w/before"]
	})
	_ = os.RemoveAll(dir)
}
