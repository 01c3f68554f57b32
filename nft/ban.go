package nft

// Bans: source prefixes whose new TCP connections to ftpsd's ports (its
// control listeners and the passive range) the guard drops, and nothing
// else on the host. They live in timed interval sets of ftpsd's table, so
// they outlive a restart of ftpsd (the table stays) and expire by
// themselves; a restore of the table puts them back.

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

const (
	ban4Name = "banned4"
	ban6Name = "banned6"
)

// Ban is one banned source prefix.
type Ban struct {
	// Prefix is the banned source range, masked.
	Prefix netip.Prefix
	// Reason is stored as the element's comment (cut to MaxLabel bytes).
	Reason string
	// Expires is filled by Bans: time left before the kernel drops it.
	Expires time.Duration
}

// ErrBanOverlap is returned by Ban when the prefix overlaps a different
// banned prefix (the kernel keeps intervals disjoint).
var ErrBanOverlap = errors.New("overlaps another banned prefix; remove that one first")

// banElem is a ban as ftpsd made it, for restores.
type banElem struct {
	reason   string
	deadline time.Time
	added    time.Time
}

// banRange returns the set and the two interval elements (start, and the
// first address after the prefix flagged as the interval's end) for p.
func (fw *NFTables) banRange(p netip.Prefix) (*nftables.Set, []byte, []byte, error) {
	if !p.IsValid() {
		return nil, nil, nil, errors.New("invalid prefix")
	}
	if p.Addr().Is4In6() && p.Bits() < 96 {
		return nil, nil, nil, fmt.Errorf("prefix %s: an IPv4-mapped prefix needs at least /96", p)
	}
	p = canonicalPrefix(p)
	set := fw.ban6
	if p.Addr().Is4() {
		set = fw.ban4
	}
	end := prefixLast(p).Next()
	if !end.IsValid() {
		// The range reaches the top of the address space, where no end
		// marker fits. Nothing legitimate lives up there (IPv4 broadcast,
		// and IPv6's ff00::/8 is multicast, never a TCP source).
		return nil, nil, nil, fmt.Errorf("prefix %s reaches the end of the address space; ban a narrower one", p)
	}
	return set, p.Addr().AsSlice(), end.AsSlice(), nil
}

// Ban drops new connections from p to ftpsd's ports for d, with reason as
// the element's comment. Banning a prefix that is already banned restarts
// its time.
func (fw *NFTables) Ban(p netip.Prefix, d time.Duration, reason string) error {
	set, start, end, err := fw.banRange(p)
	if err != nil {
		return fmt.Errorf("ban %s: %w", p, err)
	}
	if d < time.Second {
		return fmt.Errorf("ban %s: duration %v is shorter than a second", p, d)
	}
	reason = cleanLabel(reason)
	p = canonicalPrefix(p)
	fw.banMu.Lock()
	now := time.Now()
	fw.bans[p] = banElem{reason: reason, deadline: now.Add(d), added: now}
	fw.banMu.Unlock()
	// The kernel refuses a timeout on an interval's end element; it
	// expires with its start.
	elems := []nftables.SetElement{{Key: start, Timeout: d, Comment: reason}, {Key: end, IntervalEnd: true}}
	err = fw.flush(func() error {
		// add (a no-op if present), delete, add: one transaction that
		// cannot fail on a missing element and restarts the time.
		return errors.Join(
			fw.conn.SetAddElements(set, elems),
			fw.conn.SetDeleteElements(set, elems),
			fw.conn.SetAddElements(set, elems))
	})
	if err != nil {
		fw.banMu.Lock()
		delete(fw.bans, p)
		fw.banMu.Unlock()
		if isErrno(err, unix.EEXIST) {
			err = ErrBanOverlap
		}
		return fmt.Errorf("ban %s: %w", p, err)
	}
	return nil
}

// Unban lifts the ban of exactly p; a prefix that is not banned is not an
// error.
func (fw *NFTables) Unban(p netip.Prefix) error {
	set, start, end, err := fw.banRange(p)
	if err != nil {
		return fmt.Errorf("unban %s: %w", p, err)
	}
	fw.banMu.Lock()
	delete(fw.bans, canonicalPrefix(p))
	fw.banMu.Unlock()
	elems := []nftables.SetElement{{Key: start, Timeout: time.Minute}, {Key: end, IntervalEnd: true}}
	err = fw.flush(func() error {
		return errors.Join(fw.conn.SetAddElements(set, elems), fw.conn.SetDeleteElements(set, elems))
	})
	if err != nil {
		if isErrno(err, unix.EEXIST) {
			return fmt.Errorf("unban %s: %w", p, errors.New("not banned as such: it lies inside, or overlaps, another banned prefix"))
		}
		return fmt.Errorf("unban %s: %w", p, err)
	}
	return nil
}

// Bans lists the banned prefixes in the kernel, sorted.
func (fw *NFTables) Bans() ([]Ban, error) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.released {
		return nil, fmt.Errorf("list bans: %w", ErrReleased)
	}
	return fw.readBans(fw.conn)
}

// readBans decodes the interval sets into prefixes. Must be called with mu
// held, or on a connection of the caller's own.
func (fw *NFTables) readBans(conn *nftables.Conn) ([]Ban, error) {
	var out []Ban
	for _, set := range []*nftables.Set{fw.ban4, fw.ban6} {
		elems, err := conn.GetSetElements(set)
		if err != nil {
			return nil, fmt.Errorf("list bans: set %s: %w", set.Name, classify(err))
		}
		bans, err := decodeIntervals(elems)
		if err != nil {
			return nil, fmt.Errorf("list bans: set %s: %w", set.Name, err)
		}
		out = append(out, bans...)
	}
	slices.SortFunc(out, func(a, b Ban) int {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits())
	})
	return out, nil
}

// decodeIntervals pairs each start element with the interval end above it.
// A range that is not a prefix (made by hand) is shown as the widest prefix
// at its start that it contains.
func decodeIntervals(elems []nftables.SetElement) ([]Ban, error) {
	type point struct {
		addr netip.Addr
		e    nftables.SetElement
	}
	var pts []point
	for _, e := range elems {
		a, ok := netip.AddrFromSlice(e.Key)
		if !ok {
			return nil, fmt.Errorf("unexpected key %x", e.Key)
		}
		pts = append(pts, point{a, e})
	}
	slices.SortFunc(pts, func(a, b point) int { return a.addr.Compare(b.addr) })
	var out []Ban
	for i, p := range pts {
		if p.e.IntervalEnd {
			continue
		}
		last := prefixLast(netip.PrefixFrom(p.addr, 0)) // no end: to the top
		if i+1 < len(pts) && pts[i+1].e.IntervalEnd {
			last = pts[i+1].addr.Prev()
		}
		bits := p.addr.BitLen()
		for bits > 0 {
			pf := netip.PrefixFrom(p.addr, bits-1)
			if pf.Masked().Addr() != p.addr || prefixLast(pf).Compare(last) > 0 {
				break
			}
			bits--
		}
		out = append(out, Ban{Prefix: netip.PrefixFrom(p.addr, bits), Reason: p.e.Comment, Expires: p.e.Expires})
	}
	return out, nil
}

// prefixLast is the highest address in p.
func prefixLast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// canonicalPrefix is p as the kernel's packets show it: IPv4-mapped is
// IPv4, host bits cleared.
func canonicalPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

// banElements returns the bans to put back in a restore: ftpsd's own, and
// those in the kernel (added by `ftpsd ban add`) if the sets are still
// there, each with the time it has left. Must be called with mu held.
func (fw *NFTables) banElements(now time.Time) map[*nftables.Set][]nftables.SetElement {
	fw.banMu.Lock()
	defer fw.banMu.Unlock()
	if kernel, err := fw.readBans(fw.conn); err == nil {
		for _, b := range kernel {
			if _, known := fw.bans[b.Prefix]; !known && b.Expires > 0 {
				fw.bans[b.Prefix] = banElem{reason: b.Reason, deadline: now.Add(b.Expires), added: now}
			}
		}
	}
	out := make(map[*nftables.Set][]nftables.SetElement)
	for p, b := range fw.bans {
		left := b.deadline.Sub(now)
		if left < time.Second {
			delete(fw.bans, p)
			continue
		}
		set, start, end, err := fw.banRange(p)
		if err != nil {
			continue
		}
		out[set] = append(out[set],
			nftables.SetElement{Key: start, Timeout: left, Comment: b.reason},
			nftables.SetElement{Key: end, IntervalEnd: true})
	}
	return out
}

// syncBans brings the restore mirror in line with the kernel: bans added
// or removed by `ftpsd ban` (another process) are learnt here, at each
// periodic check. A ban removed by hand less than a check before the table
// is flushed may come back with the restore, for the time it had left.
func (fw *NFTables) syncBans(conn *nftables.Conn) {
	start := time.Now()
	kernel, err := fw.readBans(conn)
	if err != nil {
		return
	}
	fw.banMu.Lock()
	defer fw.banMu.Unlock()
	seen := make(map[netip.Prefix]bool, len(kernel))
	for _, b := range kernel {
		seen[b.Prefix] = true
		if _, known := fw.bans[b.Prefix]; !known && b.Expires > 0 {
			fw.bans[b.Prefix] = banElem{reason: b.Reason, deadline: start.Add(b.Expires), added: start}
		}
	}
	for p, b := range fw.bans {
		// A ban this process is adding right now may not be in the
		// kernel yet: only entries older than that are gone for real.
		if !seen[p] && b.added.Before(start.Add(-5*time.Second)) {
			delete(fw.bans, p)
		}
	}
}

// Banned reports whether a is inside a prefix this table bans: ftpsd's own
// bans and, from the periodic check (every 2 s), those added by `ftpsd ban
// add`. The server asks it for clients whose address only a PROXY header
// names: the kernel sees the balancer's address on such a connection, so
// the ban sets cannot drop it.
func (fw *NFTables) Banned(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() {
		return false
	}
	now := time.Now()
	fw.banMu.Lock()
	defer fw.banMu.Unlock()
	if len(fw.bans) == 0 {
		return false
	}
	// One lookup per prefix length: cheap whatever the number of bans.
	for bits := a.BitLen(); bits >= 0; bits-- {
		if b, ok := fw.bans[netip.PrefixFrom(a, bits).Masked()]; ok && b.deadline.After(now) {
			return true
		}
	}
	return false
}
