// Package pasvports chooses every passive data port and holds one lease per
// data socket: the lease opens the firewall pinhole for exactly (client, port)
// and closes it when the data connection arrives or the socket is closed.
package pasvports

import (
	crand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/ftpsd/ftpsd/nft"
)

// ErrExhausted means every port of the range is leased.
var ErrExhausted = errors.New("all passive ports are in use")

// ErrOverShare means the client's source already holds its share of the pool.
var ErrOverShare = errors.New("source holds its share of passive ports")

// Pool is the set of passive ports and the firewall that guards them. Safe for concurrent use.
type Pool struct {
	min, max uint16
	fw       nft.Firewall
	log      *slog.Logger

	mu   sync.Mutex
	rng  *rand.Rand
	free []uint16 // ports no lease holds, in no particular order
	pos  []int32  // pos[port-min] is the index in free, or -1 while leased

	// share bounds the leases one source holds at once; source maps a
	// client to its source (IPv6: a prefix). See SetShare.
	share  int
	source func(netip.Addr) netip.Prefix
	held   map[netip.Prefix]int
}

// New makes a pool over [min, max] whose leases open pinholes in fw.
func New(min, max uint16, fw nft.Firewall, logger *slog.Logger) (*Pool, error) {
	if min == 0 || max < min {
		return nil, fmt.Errorf("passive port range %d-%d is invalid", min, max)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("seed passive port generator: %w", err)
	}
	n := int(max) - int(min) + 1
	p := &Pool{
		min: min, max: max, fw: fw, log: logger,
		// ChaCha8 so that a client cannot predict the next port from the ones it saw.
		rng:    rand.New(rand.NewChaCha8(seed)),
		free:   make([]uint16, n),
		pos:    make([]int32, n),
		share:  defaultShare(n),
		source: func(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) },
		held:   map[netip.Prefix]int{},
	}
	for i := range n {
		p.free[i] = min + uint16(i)
		p.pos[i] = int32(i)
	}
	return p, nil
}

// SetShare sets how many leases one source may hold at once (0: a fifth
// of the pool, at least 1) and how clients map to sources. Call it before
// the first lease.
func (p *Pool) SetShare(perSource int, source func(netip.Addr) netip.Prefix) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if perSource <= 0 {
		perSource = defaultShare(len(p.pos))
	}
	p.share = perSource
	if source != nil {
		p.source = source
	}
}

// defaultShare keeps one source from holding more than a fifth of the pool.
func defaultShare(size int) int { return max(size/5, 1) }

// Share is the number of leases one source may hold at once.
func (p *Pool) Share() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.share
}

// take counts a lease against the share of client's source, which it returns.
func (p *Pool) take(client netip.Addr) (netip.Prefix, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	src := p.source(client)
	if p.held[src] >= p.share {
		return src, fmt.Errorf("%w (%d of %d ports)", ErrOverShare, p.held[src], len(p.pos))
	}
	p.held[src]++
	return src, nil
}

func (p *Pool) untake(src netip.Prefix) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held[src]--; p.held[src] <= 0 {
		delete(p.held, src)
	}
}

// Size is the number of ports in the range.
func (p *Pool) Size() int { return len(p.pos) }

// Free is the number of ports no lease holds.
func (p *Pool) Free() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free)
}

// Candidate suggests a random free port. It reserves nothing: the kernel's
// bind decides between sessions racing for the same candidate, and Lease
// claims the port that was actually bound.
func (p *Pool) Candidate() (uint16, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) == 0 {
		return 0, false
	}
	return p.free[p.rng.IntN(len(p.free))], true
}

func (p *Pool) acquire(port uint16) error {
	if port < p.min || port > p.max {
		return fmt.Errorf("port %d is outside the passive range %d-%d", port, p.min, p.max)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	i := p.pos[port-p.min]
	if i < 0 {
		return fmt.Errorf("port %d is already leased", port)
	}
	last := len(p.free) - 1
	moved := p.free[last]
	p.free[i] = moved
	p.pos[moved-p.min] = i
	p.free = p.free[:last]
	p.pos[port-p.min] = -1
	return nil
}

func (p *Pool) release(port uint16) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pos[port-p.min] >= 0 {
		return
	}
	p.pos[port-p.min] = int32(len(p.free))
	p.free = append(p.free, port)
}

// Getter adapts the pool to ftpserverlib's PasvPortGetter.
func (p *Pool) Getter() Getter { return Getter{p} }

// Getter is the ftpserverlib view of a Pool.
type Getter struct{ p *Pool }

// FetchNext returns a candidate port (exposed and listened are the same).
func (g Getter) FetchNext() (int, int, bool) {
	port, ok := g.p.Candidate()
	return int(port), int(port), ok
}

// NumberAttempts bounds how many candidates ftpserverlib tries to bind; it
// asks for them all up front, so keep it small (it uses at least 10).
func (g Getter) NumberAttempts() int { return min(g.p.Size(), 10) }

// Lease claims the port ln is bound to for client and opens the pinhole
// (client, port) before returning, so that the reply naming the port is only
// sent once the kernel admits the client. The returned listener admits one
// data connection from client only and ends the lease when closed. If the
// client has not connected within wait (0: no limit), the lease ends itself.
func (p *Pool) Lease(ln net.Listener, client netip.Addr, label string, wait time.Duration) (*Lease, error) {
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		return nil, fmt.Errorf("passive listener has address %v, not TCP", ln.Addr())
	}
	port := uint16(addr.Port)
	client = client.Unmap()
	src, err := p.take(client)
	if err != nil {
		return nil, fmt.Errorf("lease port %d for %s: %w", port, src, err)
	}
	if err := p.acquire(port); err != nil {
		p.untake(src)
		return nil, fmt.Errorf("lease port %d: %w", port, err)
	}
	if err := p.fw.Open(nft.Pinhole{Client: client, Port: port, Label: label}); err != nil {
		p.release(port)
		p.untake(src)
		return nil, fmt.Errorf("open pinhole %s:%d: %w", client, port, err)
	}
	if tl, ok := ln.(*net.TCPListener); ok && wait > 0 {
		tl.SetDeadline(time.Now().Add(wait))
	}
	return newLease(ln, p, client, src, port, label), nil
}
