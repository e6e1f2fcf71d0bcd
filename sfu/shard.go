package sfu

import (
	"sync"
	"sync/atomic"

	"github.com/pion/rtp"
)

// Sharded fan-out. A producer with many consumers splits each packet's
// fan-out into contiguous shards of its binding snapshot: the writing
// goroutine (the producer's reader) offers the shards after the first to
// the engine's fan-out workers, writes the first itself, then writes every
// offered shard that no worker has taken yet (a worker that is slow to
// wake, for instance because another process holds its CPU, costs the
// packet nothing), and waits until every shard of the packet is written
// before it returns (and so before the next packet). Each binding belongs
// to exactly one shard of a packet, so its munger, counters and RTX state
// still have a single writer at a time, and its packets still leave in
// order: the producer's wmu is held throughout, which also keeps NACK
// answers (Producer.resend) and Producer.continuation out of a running
// fan-out. Every worker has its own scratch buffer and RTP header and
// opens its own burst on the batching socket, so the shards' writes (SRTP,
// interceptors, sendmmsg) run on as many cores as are free. Small fan-outs
// (fewer than 2×Config.FanoutShardMin bindings) are not split: waking a
// worker costs more than it saves there.

// fanoutPool is the engine's fan-out workers. A nil pool, or one with no
// workers, never splits.
type fanoutPool struct {
	workers  []*fanoutWorker
	shardMin int // least bindings per shard

	// mu orders dispatch against close: senders hold it for reading, so
	// that no job is queued to a worker whose queue close has closed.
	mu     sync.RWMutex
	closed bool
	wg     sync.WaitGroup // the workers' goroutines

	// next rotates the worker of new producers' second shards, so that
	// many sharded producers spread over the workers.
	next atomic.Uint32
}

// fanoutWorker is one goroutine writing shards, with its own scratch space.
type fanoutWorker struct {
	jobs    chan *shardJob
	hdr     rtp.Header
	scratch [maxCachedPayload]byte
}

// shardJob is one shard of one packet's fan-out. A producer keeps one per
// worker it may use (Producer.shards) and reuses them for every packet, so
// dispatching allocates nothing; the fields are written by the producer's
// writer before the job is queued and read by the worker, n the other way
// round (ordered by the channel and done).
type shardJob struct {
	t       *fanoutTrack
	bs      []*trackBinding
	layer   int8
	pkt     *rtp.Packet
	fi      *frameInfo
	clock   uint32
	now     int64
	batch   *batchConn
	n       int // packets written (set by whoever took the job)
	done    *sync.WaitGroup
	workerN int // index of the worker it is offered to
	// taken is set by whoever writes the shard: the worker or, when the
	// worker has not started it yet, the producer's writer. The writer
	// sets the other fields only while it is set (between packets) and
	// clears it to offer the job, so a taker sees them.
	taken atomic.Bool
}

// shardQueue is the number of jobs a worker's queue holds; a writer that
// finds it full writes the shard itself.
const shardQueue = 64

// newFanoutPool starts workers-1 goroutines (the writer of a packet is the
// first of its workers); workers <= 1 starts none.
func newFanoutPool(workers, shardMin int) *fanoutPool {
	fp := &fanoutPool{shardMin: max(shardMin, 1)}
	for range workers - 1 {
		w := &fanoutWorker{jobs: make(chan *shardJob, shardQueue)}
		fp.workers = append(fp.workers, w)
		fp.wg.Add(1)
		go func() {
			defer fp.wg.Done()
			w.run()
		}()
	}
	return fp
}

// run writes the shards queued to w until its queue is closed (a closed
// queue still delivers what it holds, so no queued job is left unwritten).
func (w *fanoutWorker) run() {
	for j := range w.jobs {
		if !j.taken.CompareAndSwap(false, true) {
			continue // the writer wrote it, or an earlier queue entry of the job did
		}
		j.run(w.scratch[:], &w.hdr)
	}
}

// run writes the job's shard in a burst of its own with scratch and h,
// and reports it done.
func (j *shardJob) run(scratch []byte, h *rtp.Header) {
	j.batch.begin()
	j.n = j.t.write(j.bs, j.layer, j.pkt, j.fi, j.clock, j.now, scratch, h)
	j.batch.end()
	j.done.Done()
}

// close stops the workers once they have written every queued shard, and
// waits for them. Later fan-outs are written by their writers alone.
func (fp *fanoutPool) close() {
	if fp == nil {
		return
	}
	fp.mu.Lock()
	if !fp.closed {
		fp.closed = true
		for _, w := range fp.workers {
			close(w.jobs)
		}
	}
	fp.mu.Unlock()
	fp.wg.Wait()
}

// shardCount is how many shards a fan-out to n bindings is split into: at
// least shardMin bindings each, at most one per worker plus the writer.
func (fp *fanoutPool) shardCount(n int) int {
	if fp == nil || len(fp.workers) == 0 {
		return 1
	}
	return max(1, min(len(fp.workers)+1, n/fp.shardMin))
}

// shardState is a producer's share of the pool: its reusable jobs and the
// wait for them. Owned by the producer's writer (under Producer.wmu).
type shardState struct {
	jobs []shardJob
	wg   sync.WaitGroup
	// fi is the packet's frameInfo, copied here so that the writer's
	// stays on its stack (the jobs point at this one).
	fi frameInfo
	// offered and stolen count the shards offered to workers and those
	// of them the writer wrote itself.
	offered, stolen uint64
}

// initShards prepares the jobs a producer's fan-outs may use in s (which
// must not move afterwards: the jobs point at its wait group); a new
// producer's second shard goes to worker first (modulo their number).
func (fp *fanoutPool) initShards(s *shardState) {
	if fp == nil || len(fp.workers) == 0 {
		return
	}
	first := int(fp.next.Add(1))
	s.jobs = make([]shardJob, len(fp.workers))
	for i := range s.jobs {
		s.jobs[i].taken.Store(true) // not offered
		s.jobs[i].done = &s.wg
		s.jobs[i].workerN = (first + i) % len(fp.workers)
	}
}

// writeSharded fans pkt out to bs split into k shards (k >= 2, from
// shardCount): shards 1..k-1 are offered to workers, shard 0 is written
// here with scratch and h (the producer's), then the offered shards no
// worker has taken, then it waits for the others. Called with the
// producer's wmu held, inside no burst. It returns the number of packets
// written.
func (fp *fanoutPool) writeSharded(s *shardState, k int, t *fanoutTrack, bs []*trackBinding, layer int8,
	pkt *rtp.Packet, fi *frameInfo, clock uint32, now int64, batch *batchConn, scratch []byte, h *rtp.Header) int {
	size := (len(bs) + k - 1) / k
	own := bs[:size]
	s.fi = *fi // the jobs read this copy: fi stays the caller's
	queued := 0
	fp.mu.RLock()
	if !fp.closed {
		for i := 1; i < k; i++ {
			lo := i * size
			if lo >= len(bs) {
				break
			}
			j := &s.jobs[i-1] // taken: nobody reads it now
			j.t, j.bs, j.layer, j.pkt, j.fi, j.clock, j.now, j.batch, j.n =
				t, bs[lo:min(lo+size, len(bs))], layer, pkt, &s.fi, clock, now, batch, 0
			s.wg.Add(1)
			j.taken.Store(false)
			select {
			case fp.workers[j.workerN].jobs <- j:
			default:
				// The worker's queue is full: it has not run for the
				// last shardQueue packets (each shard the writer took
				// back leaves an entry it skips). The shard stays
				// offered but unqueued, and the writer takes it back
				// below instead of waiting for the worker.
			}
			queued++
			s.offered++
		}
	}
	fp.mu.RUnlock()
	if queued == 0 {
		own = bs // closed: write everything here
	}
	batch.begin()
	n := t.write(own, layer, pkt, fi, clock, now, scratch, h)
	batch.end()
	for i := range queued {
		if j := &s.jobs[i]; j.taken.CompareAndSwap(false, true) {
			j.run(scratch, h)
			s.stolen++
		}
	}
	s.wg.Wait()
	for i := range queued {
		j := &s.jobs[i]
		n += j.n
		j.bs, j.pkt = nil, nil // keep nothing of the caller's alive
	}
	return n
}
