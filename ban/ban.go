// Package ban keeps ftpsd's in-process account of hostile sources: it counts
// failed logins per source (an IPv4 address, or an IPv6 prefix), decides
// bans, and says how long to hold back the reply to a failure (the tarpit).
// It knows nothing about sockets or firewalls; the server acts on its answers.
package ban

import (
	"net/netip"
	"sort"
	"sync"
	"time"
)

// Weights of the events that count towards a ban, in units of half a failed
// login (so that max_failures stays a count of failed logins).
const (
	// WeightFailedLogin is a wrong user name or password.
	WeightFailedLogin = 2
	// WeightClearTextUser is a USER sent before AUTH TLS while TLS is
	// required. It costs the server nothing (no hash, no password seen) and a
	// client left on plain FTP by mistake retries a few times on its own, so
	// it counts half: such a client is told "TLS required" a few times before
	// it is banned, while a bot that only speaks plain FTP is banned after
	// 2*max_failures tries.
	WeightClearTextUser = 1
)

// Tarpit delays, for the failures a source has in its window: the first
// failure is answered after tarpitBase, each further one after twice the
// previous, up to tarpitMax.
const (
	tarpitBase = 500 * time.Millisecond
	tarpitMax  = 8 * time.Second
)

// maxTracked bounds memory: past it, sources with no failure in their
// window are forgotten at once, then arbitrary ones.
const maxTracked = 1 << 16

// Config is what the [ban] section says.
type Config struct {
	MaxFailures int
	Window      time.Duration
	Duration    time.Duration
	Allow       []netip.Prefix
	IPv6Prefix  int
}

// Ban is one banned source.
type Ban struct {
	Prefix netip.Prefix
	Until  time.Time
	Reason string
}

// Tracker counts failures and holds bans. Safe for concurrent use.
type Tracker struct {
	cfg Config

	mu     sync.Mutex
	events map[netip.Prefix][]event // weighted failures within the window, oldest first
	bans   map[netip.Prefix]Ban     // bans of exactly one source, found by one lookup
	wide   map[netip.Prefix]Ban     // bans of other lengths (operator's), searched in full
}

type event struct {
	at     time.Time
	weight int
}

// New makes a tracker. MaxFailures < 1 is treated as 1, an IPv6Prefix
// outside 1..128 as 64.
func New(cfg Config) *Tracker {
	cfg.MaxFailures = max(cfg.MaxFailures, 1)
	if cfg.IPv6Prefix < 1 || cfg.IPv6Prefix > 128 {
		cfg.IPv6Prefix = 64
	}
	return &Tracker{cfg: cfg, events: map[netip.Prefix][]event{},
		bans: map[netip.Prefix]Ban{}, wide: map[netip.Prefix]Ban{}}
}

// Source is the unit ftpsd counts clients by: an IPv4 address (/32), or the
// IPv6 prefix of length v6bits that contains a. IPv4-mapped addresses count
// as IPv4.
func Source(a netip.Addr, v6bits int) netip.Prefix {
	a = a.Unmap()
	bits := a.BitLen()
	if a.Is6() {
		bits = v6bits
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return netip.PrefixFrom(a, a.BitLen())
	}
	return p
}

// Source is the package Source with the tracker's IPv6 prefix length.
func (t *Tracker) Source(a netip.Addr) netip.Prefix { return Source(a, t.cfg.IPv6Prefix) }

// Allowed reports whether a is in an allow-listed prefix: never banned, never delayed.
func (t *Tracker) Allowed(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range t.cfg.Allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Banned returns the ban covering a, if one is in force at now.
func (t *Tracker) Banned(a netip.Addr, now time.Time) (Ban, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.bannedLocked(a.Unmap(), now)
}

// bannedLocked is Banned for an unmapped a, with t.mu held.
func (t *Tracker) bannedLocked(a netip.Addr, now time.Time) (Ban, bool) {
	if b, ok := t.bans[t.Source(a)]; ok && now.Before(b.Until) {
		return b, true
	}
	for p, b := range t.wide {
		if p.Contains(a) && now.Before(b.Until) {
			return b, true
		}
	}
	return Ban{}, false
}

// Fail records an event of the given weight from a at now. It returns how
// long to hold back the reply (the tarpit) and, when this event reaches the
// threshold, the ban just decided (the caller logs and enforces it; the
// source's count starts over). Allow-listed and already banned sources get
// neither.
func (t *Tracker) Fail(a netip.Addr, weight int, reason string, now time.Time) (time.Duration, *Ban) {
	if t.Allowed(a) {
		return 0, nil
	}
	a = a.Unmap()
	src := t.Source(a)
	t.mu.Lock()
	defer t.mu.Unlock()
	// A ban of a wider prefix (the operator's) covers the source too.
	if _, ok := t.bannedLocked(a, now); ok {
		return 0, nil
	}
	evs := t.prune(t.events[src], now)
	evs = append(evs, event{at: now, weight: weight})
	total := 0
	for _, e := range evs {
		total += e.weight
	}
	if total >= t.cfg.MaxFailures*WeightFailedLogin {
		delete(t.events, src)
		b := Ban{Prefix: src, Until: now.Add(t.cfg.Duration), Reason: reason}
		t.bans[src] = b
		return 0, &b
	}
	if len(t.events) >= maxTracked {
		t.shrinkLocked(now)
	}
	t.events[src] = evs
	// The delay grows with the failures already counted, in whole logins.
	n := (total - weight) / WeightFailedLogin
	delay := tarpitBase << min(n, 16)
	return min(delay, tarpitMax), nil
}

// prune drops events that left the window.
func (t *Tracker) prune(evs []event, now time.Time) []event {
	i := 0
	for i < len(evs) && now.Sub(evs[i].at) > t.cfg.Window {
		i++
	}
	return evs[i:]
}

func (t *Tracker) shrinkLocked(now time.Time) {
	for src, evs := range t.events {
		if len(t.prune(evs, now)) == 0 {
			delete(t.events, src)
		}
	}
	for src := range t.events {
		if len(t.events) < maxTracked*3/4 {
			break
		}
		delete(t.events, src)
	}
}

// Add bans p until now+d (an operator's ban, or one restored at start); it
// replaces a ban of the same prefix.
func (t *Tracker) Add(p netip.Prefix, d time.Duration, reason string, now time.Time) Ban {
	p = p.Masked()
	b := Ban{Prefix: p, Until: now.Add(d), Reason: reason}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.mapFor(p)[p] = b
	return b
}

// Remove lifts the ban of exactly p; it reports whether there was one.
func (t *Tracker) Remove(p netip.Prefix) bool {
	p = p.Masked()
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.mapFor(p)
	_, ok := m[p]
	delete(m, p)
	delete(t.events, p)
	return ok
}

// mapFor is where a ban of p lives.
func (t *Tracker) mapFor(p netip.Prefix) map[netip.Prefix]Ban {
	if p == t.Source(p.Addr()) {
		return t.bans
	}
	return t.wide
}

// List returns the bans in force at now, sorted by prefix.
func (t *Tracker) List(now time.Time) []Ban {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Ban, 0, len(t.bans)+len(t.wide))
	for _, m := range []map[netip.Prefix]Ban{t.bans, t.wide} {
		for _, b := range m {
			if now.Before(b.Until) {
				out = append(out, b)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		pi, pj := out[i].Prefix, out[j].Prefix
		if c := pi.Addr().Compare(pj.Addr()); c != 0 {
			return c < 0
		}
		return pi.Bits() < pj.Bits()
	})
	return out
}

// Expire forgets bans and failure counts that ended before now; call it
// now and then to keep memory bounded.
func (t *Tracker) Expire(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range []map[netip.Prefix]Ban{t.bans, t.wide} {
		for p, b := range m {
			if !now.Before(b.Until) {
				delete(m, p)
			}
		}
	}
	for src, evs := range t.events {
		if len(t.prune(evs, now)) == 0 {
			delete(t.events, src)
		}
	}
}
