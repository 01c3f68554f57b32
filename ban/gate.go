package ban

import (
	"errors"
	"net/netip"
	"sync"
	"time"
)

// ErrGateTimeout means a caller waited too long for a slot.
var ErrGateTimeout = errors.New("login queue wait timed out")

// Gate bounds password hashing: at most slots hashes at once in all, at
// most one per source, and when a slot frees the sources waiting take turns
// (round robin), however many connections each has queued. So a brute force
// from one source (an address, or an IPv6 prefix) holds at most one core's
// worth of bcrypt, and another user's login waits for at most one hash per
// source ahead of it rather than for the attacker's whole queue.
type Gate struct {
	mu     sync.Mutex
	free   int
	active map[netip.Prefix]bool
	queues map[netip.Prefix][]*waiter
	ring   []netip.Prefix // sources with waiters, in turn order
}

type waiter struct {
	ready   chan struct{}
	granted bool
}

// NewGate makes a gate with the given number of concurrent slots (at least 1).
func NewGate(slots int) *Gate {
	return &Gate{free: max(slots, 1), active: map[netip.Prefix]bool{}, queues: map[netip.Prefix][]*waiter{}}
}

// Acquire waits for a slot for src, at most wait. Call the returned
// function exactly once when the work is done.
func (g *Gate) Acquire(src netip.Prefix, wait time.Duration) (func(), error) {
	g.mu.Lock()
	if g.free > 0 && !g.active[src] && len(g.queues[src]) == 0 {
		g.grantLocked(src)
		g.mu.Unlock()
		return g.releaser(src), nil
	}
	w := &waiter{ready: make(chan struct{})}
	if len(g.queues[src]) == 0 {
		g.ring = append(g.ring, src)
	}
	g.queues[src] = append(g.queues[src], w)
	g.mu.Unlock()

	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-w.ready:
		return g.releaser(src), nil
	case <-timer.C:
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if w.granted { // granted while timing out: take it after all
		return g.releaser(src), nil
	}
	q := g.queues[src]
	for i, x := range q {
		if x == w {
			g.queues[src] = append(q[:i:i], q[i+1:]...)
			break
		}
	}
	if len(g.queues[src]) == 0 {
		g.dropLocked(src)
	}
	return nil, ErrGateTimeout
}

func (g *Gate) grantLocked(src netip.Prefix) {
	g.free--
	g.active[src] = true
}

func (g *Gate) releaser(src netip.Prefix) func() {
	var once sync.Once
	return func() { once.Do(func() { g.release(src) }) }
}

func (g *Gate) release(src netip.Prefix) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.free++
	delete(g.active, src)
	g.dispatchLocked()
}

// dispatchLocked hands free slots to waiting sources in ring order; a source
// served goes to the back of the ring.
func (g *Gate) dispatchLocked() {
	for i := 0; g.free > 0 && i < len(g.ring); {
		src := g.ring[i]
		if g.active[src] {
			i++
			continue
		}
		q := g.queues[src]
		w := q[0]
		g.queues[src] = q[1:]
		g.grantLocked(src)
		w.granted = true
		close(w.ready)
		g.ring = append(g.ring[:i:i], g.ring[i+1:]...)
		if len(g.queues[src]) > 0 {
			g.ring = append(g.ring, src)
		} else {
			delete(g.queues, src)
		}
	}
}

func (g *Gate) dropLocked(src netip.Prefix) {
	delete(g.queues, src)
	for i, s := range g.ring {
		if s == src {
			g.ring = append(g.ring[:i:i], g.ring[i+1:]...)
			return
		}
	}
}
