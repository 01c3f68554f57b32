package nft

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

const (
	set4Name  = "pinholes4"
	set6Name  = "pinholes6"
	chainName = "guard"

	// guardPriority is "filter - 10": a drop is final in any base chain,
	// so the order does not change the verdict, but running first keeps
	// unadmitted SYNs out of the host's own filter chains and their logs.
	guardPriority = -10

	// Key sizes: each field of a concatenation is padded to 4 bytes.
	key4Len = 4 + 4  // ipv4_addr . inet_service
	key6Len = 16 + 4 // ipv6_addr . inet_service
)

var (
	key4Type = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	key6Type = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetService)
)

// NFTables is the nftables implementation of Firewall. All kernel traffic
// goes through one lasting netlink connection guarded by mu.
type NFTables struct {
	cfg   Config
	table *nftables.Table
	chain *nftables.Chain
	set4  *nftables.Set
	set6  *nftables.Set
	ban4  *nftables.Set
	ban6  *nftables.Set

	// mu serialises every use of conn. google/nftables queues messages in
	// the Conn and Flush sends whatever is queued as one kernel
	// transaction, so without it one session's ENOENT delete could abort
	// another session's add; the dump calls also share the socket and
	// would read each other's replies.
	mu       sync.Mutex
	conn     *nftables.Conn
	released bool

	// queue holds the pinhole and ban changes waiting for a transaction
	// (group commit, see flush).
	queue commitQueue

	// live mirrors the pinholes ftpsd has open, so that a restore can
	// put them back with the time they have left. liveMu nests inside mu.
	liveMu sync.Mutex
	live   map[string]liveElem

	// bans mirrors the banned prefixes, for restores. banMu nests inside mu.
	banMu sync.Mutex
	bans  map[netip.Prefix]banElem

	// restores counts restores; guarded by mu (restores run under it).
	restores Restores
	// watch is the table watcher; nil for Attach.
	watch *watcher
}

// liveElem is one pinhole as ftpsd opened it.
type liveElem struct {
	set      *nftables.Set
	key      []byte
	label    string
	deadline time.Time
}

// Setup creates or adopts ftpsd's table: in one transaction it adds the
// table (so the delete cannot fail), deletes it and re-creates it with the
// sets and the guard chain. A restart therefore starts without stale
// pinholes (bans are carried over), a changed port range takes effect, and
// at no instant is the range unguarded. No other table is touched. The returned value keeps one
// lasting netlink connection: a connection per operation would make every
// close wait for an RCU grace period (DESIGN.md §3). It also watches the
// table and restores it whenever something else removes or alters it
// (watch.go); the caller should own the table first (Claim), or two
// processes would keep replacing each other's table.
func Setup(cfg Config) (*NFTables, error) {
	cfg, err := cfg.withDefaults(true)
	if err != nil {
		return nil, fmt.Errorf("set up nftables: %w", err)
	}
	conn, err := dial(cfg, true)
	if err != nil {
		return nil, fmt.Errorf("set up table inet %s: %w", cfg.Table, err)
	}
	fw := newNFTables(cfg, conn)
	// Bans outlive a restart (pinholes do not: their sessions are gone).
	keep := fw.banElements(time.Now())
	if err := fw.queueTable(keep); err != nil {
		_ = conn.CloseLasting()
		return nil, fmt.Errorf("set up table inet %s: %w", cfg.Table, err)
	}
	if err := conn.Flush(); err != nil {
		_ = conn.CloseLasting()
		err = classify(err)
		if isErrno(err, unix.ENOENT) {
			// Every object is created in this very batch, so ENOENT
			// can only mean a missing chain type or expression
			// module.
			err = fmt.Errorf("%w: %w", ErrUnsupported, err)
		}
		return nil, fmt.Errorf("set up table inet %s: %w", cfg.Table, err)
	}
	w, err := startWatcher(fw)
	if err != nil {
		_ = conn.CloseLasting()
		return nil, fmt.Errorf("watch table inet %s: %w", cfg.Table, err)
	}
	fw.watch = w
	return fw, nil
}

// queueTable queues, on fw.conn, the transaction that replaces whatever
// holds the table's name by ftpsd's table with elems in its sets: add (so
// that the delete cannot fail), delete, create. The delete also removes
// anything someone added to the table.
func (fw *NFTables) queueTable(elems map[*nftables.Set][]nftables.SetElement) error {
	conn := fw.conn
	conn.AddTable(fw.table)
	conn.DelTable(fw.table)
	conn.AddTable(fw.table)
	for _, s := range fw.sets() {
		if err := conn.AddSet(s, elems[s]); err != nil {
			return fmt.Errorf("add set %s: %w", s.Name, err)
		}
	}
	conn.AddChain(fw.chain)
	for _, r := range fw.guardRules() {
		conn.AddRule(r)
	}
	return nil
}

// sets are the sets of ftpsd's table, in creation order.
func (fw *NFTables) sets() []*nftables.Set {
	return []*nftables.Set{fw.set4, fw.set6, fw.ban4, fw.ban6}
}

// Attach opens the existing table without changing anything (for `ftpsd
// firewall status`). The port range in cfg is optional here; when set,
// Open still refuses ports outside it.
func Attach(cfg Config) (*NFTables, error) {
	cfg, err := cfg.withDefaults(false)
	if err != nil {
		return nil, fmt.Errorf("attach to nftables: %w", err)
	}
	conn, err := dial(cfg, true)
	if err != nil {
		return nil, fmt.Errorf("attach to table inet %s: %w", cfg.Table, err)
	}
	fw := newNFTables(cfg, conn)
	fail := func(err error) (*NFTables, error) {
		_ = conn.CloseLasting()
		return nil, fmt.Errorf("attach to table inet %s: %w", cfg.Table, err)
	}
	if _, err := conn.ListTableOfFamily(cfg.Table, nftables.TableFamilyINet); err != nil {
		if isErrno(err, unix.ENOENT) {
			return fail(fmt.Errorf("%w (ftpsd serve has not created it in this network namespace, or it was reset)", ErrNoTable))
		}
		return fail(classify(err))
	}
	for _, name := range []string{set4Name, set6Name} {
		if _, err := conn.GetSetByName(fw.table, name); err != nil {
			return fail(fmt.Errorf("set %s: %w (not a table made by ftpsd?)", name, classify(err)))
		}
	}
	if _, err := conn.ListChain(fw.table, chainName); err != nil {
		return fail(fmt.Errorf("chain %s: %w (not a table made by ftpsd?)", chainName, classify(err)))
	}
	return fw, nil
}

// Reset deletes ftpsd's table and nothing else, which unguards the passive
// range. It reports whether there was a table to delete.
func Reset(cfg Config) (bool, error) {
	cfg, err := cfg.withDefaults(false)
	if err != nil {
		return false, fmt.Errorf("reset nftables: %w", err)
	}
	// A one-off operation: a short-lived connection is fine here.
	conn, err := dial(cfg, false)
	if err != nil {
		return false, fmt.Errorf("reset table inet %s: %w", cfg.Table, err)
	}
	conn.DelTable(&nftables.Table{Name: cfg.Table, Family: nftables.TableFamilyINet})
	if err := conn.Flush(); err != nil {
		if isErrno(err, unix.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("reset table inet %s: %w", cfg.Table, classify(err))
	}
	return true, nil
}

func dial(cfg Config, lasting bool) (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	if lasting {
		opts = append(opts, nftables.AsLasting())
	}
	if cfg.NetNSFd != 0 {
		opts = append(opts, nftables.WithNetNSFd(cfg.NetNSFd))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("open netlink socket: %w", classify(err))
	}
	return conn, nil
}

func newNFTables(cfg Config, conn *nftables.Conn) *NFTables {
	t := &nftables.Table{Name: cfg.Table, Family: nftables.TableFamilyINet}
	policy := nftables.ChainPolicyAccept
	return &NFTables{
		cfg:   cfg,
		conn:  conn,
		table: t,
		live:  make(map[string]liveElem),
		bans:  make(map[netip.Prefix]banElem),
		// Fixed IDs instead of google/nftables' global counter (racy
		// across Conns); IDs only need to be unique within a batch.
		set4: &nftables.Set{Table: t, Name: set4Name, ID: 1, KeyType: key4Type, HasTimeout: true, Concatenation: true},
		set6: &nftables.Set{Table: t, Name: set6Name, ID: 2, KeyType: key6Type, HasTimeout: true, Concatenation: true},
		ban4: &nftables.Set{Table: t, Name: ban4Name, ID: 3, KeyType: nftables.TypeIPAddr, HasTimeout: true, Interval: true},
		ban6: &nftables.Set{Table: t, Name: ban6Name, ID: 4, KeyType: nftables.TypeIP6Addr, HasTimeout: true, Interval: true},
		chain: &nftables.Chain{
			Name:     chainName,
			Table:    t,
			Type:     nftables.ChainTypeFilter,
			Hooknum:  nftables.ChainHookInput,
			Priority: nftables.ChainPriorityRef(guardPriority),
			Policy:   &policy,
		},
	}
}

// guardRules builds, expression for expression, what nft makes of
//
//	tcp dport A-B ct state new ip saddr @banned4 drop
//	tcp dport A-B ct state new ip6 saddr @banned6 drop
//	tcp dport P ct state new ip saddr @banned4 drop      (each control port P)
//	tcp dport P ct state new ip6 saddr @banned6 drop
//	tcp dport A-B ct state new ip saddr . tcp dport @pinholes4 accept
//	tcp dport A-B ct state new ip6 saddr . tcp dport @pinholes6 accept
//	tcp dport A-B ct state new counter drop
//
// With a mark configured, the two accept rules set it first:
// "... meta mark set meta mark & ~MASK | MARK accept".
//
// The l4proto check guards the port load and the nfproto check guards the
// address load: an inet chain sees both families, and reading "ip saddr"
// from an IPv6 packet would read the wrong bytes.
func (fw *NFTables) guardRules() []*nftables.Rule {
	// newTo matches new TCP connections to ports lo-hi.
	newTo := func(lo, hi uint16) []expr.Any {
		port := expr.Any(&expr.Range{Op: expr.CmpOpEq, Register: 1,
			FromData: binaryutil.BigEndian.PutUint16(lo),
			ToData:   binaryutil.BigEndian.PutUint16(hi)})
		if lo == hi {
			port = &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(lo)}
		}
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			port,
			&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
			// ct state is a host-endian bitmask.
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW),
				Xor:  make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		}
	}
	newInRange := func() []expr.Any { return newTo(fw.cfg.PortMin, fw.cfg.PortMax) }
	// saddrIn looks the source address up in set.
	saddrIn := func(nfproto byte, addrOff, addrLen uint32, set *nftables.Set) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nfproto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: addrOff, Len: addrLen},
			&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
		}
	}
	lookup := func(nfproto byte, addrOff, addrLen, portReg uint32, set *nftables.Set) []expr.Any {
		return append(append(append(newInRange(),
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nfproto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: addrOff, Len: addrLen},
			// The port goes into the 32-bit register right after the
			// address: reg 9 after 4 bytes, reg 12 (= reg 2) after 16.
			&expr.Payload{DestRegister: portReg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
		), fw.markExprs()...), &expr.Verdict{Kind: expr.VerdictAccept})
	}
	rule := func(e []expr.Any) *nftables.Rule {
		return &nftables.Rule{Table: fw.table, Chain: fw.chain, Exprs: e}
	}
	// Bans first: an accept ends the chain, so a banned client's pinhole
	// must not get there before the ban's drop.
	var rules []*nftables.Rule
	for _, pr := range fw.bannedPorts() {
		for _, fam := range []struct {
			nfproto  byte
			off, len uint32
			set      *nftables.Set
		}{{unix.NFPROTO_IPV4, 12, 4, fw.ban4}, {unix.NFPROTO_IPV6, 8, 16, fw.ban6}} {
			e := append(newTo(pr[0], pr[1]), saddrIn(fam.nfproto, fam.off, fam.len, fam.set)...)
			rules = append(rules, rule(append(e, &expr.Verdict{Kind: expr.VerdictDrop})))
		}
	}
	return append(rules,
		rule(lookup(unix.NFPROTO_IPV4, 12, 4, 9, fw.set4)),
		rule(lookup(unix.NFPROTO_IPV6, 8, 16, 2, fw.set6)),
		rule(append(newInRange(), &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})),
	)
}

// bannedPorts are the port ranges banned sources may not open connections
// to: the passive range, then each control port (sorted, deduplicated,
// outside the range).
func (fw *NFTables) bannedPorts() [][2]uint16 {
	out := [][2]uint16{{fw.cfg.PortMin, fw.cfg.PortMax}}
	ports := slices.Clone(fw.cfg.ListenPorts)
	slices.Sort(ports)
	for _, p := range slices.Compact(ports) {
		if p != 0 && (p < fw.cfg.PortMin || p > fw.cfg.PortMax) {
			out = append(out, [2]uint16{p, p})
		}
	}
	return out
}

// element maps a pinhole to its set and key: address bytes, the port big
// endian, then two bytes of padding (concatenation fields are 4-aligned).
func (fw *NFTables) element(client netip.Addr, port uint16) (*nftables.Set, []byte, error) {
	if !client.IsValid() {
		return nil, nil, errors.New("invalid client address")
	}
	a := canonical(client)
	if fw.cfg.PortMax != 0 && (port < fw.cfg.PortMin || port > fw.cfg.PortMax) {
		return nil, nil, fmt.Errorf("port outside the guarded range %d-%d", fw.cfg.PortMin, fw.cfg.PortMax)
	}
	if a.Is4() {
		key := make([]byte, key4Len)
		b := a.As4()
		copy(key, b[:])
		binary.BigEndian.PutUint16(key[4:], port)
		return fw.set4, key, nil
	}
	key := make([]byte, key6Len)
	b := a.As16()
	copy(key, b[:])
	binary.BigEndian.PutUint16(key[16:], port)
	return fw.set6, key, nil
}

// markExprs sets the configured mark within its mask, leaving the host's
// other mark bits alone: mark = (mark & ~mask) ^ value, value within mask.
func (fw *NFTables) markExprs() []expr.Any {
	if fw.cfg.MarkMask == 0 {
		return nil
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^fw.cfg.MarkMask),
			Xor:  binaryutil.NativeEndian.PutUint32(fw.cfg.Mark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
	}
}

// Open adds {client . port} with the configured timeout and returns once
// the kernel has committed it. If the pair is already present (possible
// only after a failed Close) the kernel keeps that element with its old
// deadline and label: a hole is never extended, at worst it closes early.
// Refreshing it would need add+delete+add per Open, which doubles the p99.
func (fw *NFTables) Open(p Pinhole) error {
	set, key, err := fw.element(p.Client, p.Port)
	if err != nil {
		return fmt.Errorf("open pinhole %s: %w", netip.AddrPortFrom(p.Client, p.Port), err)
	}
	elem := nftables.SetElement{Key: key, Timeout: fw.cfg.Timeout, Comment: cleanLabel(p.Label)}
	// Recorded before the kernel has it, so that a restore racing with
	// this Open cannot miss it; the deadline is taken early, so a restore
	// never gives the hole more time than the kernel would have.
	id := string(key)
	fw.liveMu.Lock()
	fw.live[id] = liveElem{set: set, key: key, label: elem.Comment, deadline: time.Now().Add(fw.cfg.Timeout)}
	fw.liveMu.Unlock()
	err = fw.flush(func() error { return fw.conn.SetAddElements(set, []nftables.SetElement{elem}) })
	if err != nil {
		fw.forget(id)
		if isErrno(err, unix.ENOENT) {
			err = fmt.Errorf("set %s of table inet %s is missing (table reset while ftpsd runs?): %w", set.Name, fw.cfg.Table, err)
		}
		return fmt.Errorf("open pinhole %s: %w", netip.AddrPortFrom(p.Client, p.Port), err)
	}
	return nil
}

// Close deletes {client . port}; an element that already expired or was
// never there is not an error.
//
// A failed transaction costs the kernel an RCU grace period on abort
// (measured 8-24 ms here, all of it under mu), and a pinhole whose client
// never connected has usually expired by the time its lease closes it. So
// Close does not send a bare delete that may fail with ENOENT: it adds the
// element (a no-op when present) and deletes it in the same transaction,
// which cannot fail for a missing element. ENOENT is still accepted for
// the microsecond race where the element expires between the two steps.
func (fw *NFTables) Close(client netip.Addr, port uint16) error {
	set, key, err := fw.element(client, port)
	if err != nil {
		return fmt.Errorf("close pinhole %s: %w", netip.AddrPortFrom(client, port), err)
	}
	// Forgotten first: a restore from now on leaves it out.
	fw.forget(string(key))
	err = fw.flush(func() error {
		return errors.Join(
			fw.conn.SetAddElements(set, []nftables.SetElement{{Key: key, Timeout: fw.cfg.Timeout}}),
			fw.conn.SetDeleteElements(set, []nftables.SetElement{{Key: key}}))
	})
	if err != nil && !isErrno(err, unix.ENOENT) {
		return fmt.Errorf("close pinhole %s: %w", netip.AddrPortFrom(client, port), err)
	}
	return nil
}

func (fw *NFTables) forget(id string) {
	fw.liveMu.Lock()
	delete(fw.live, id)
	fw.liveMu.Unlock()
}

// liveElements returns the pinholes to put back, with the time each has left.
func (fw *NFTables) liveElements(now time.Time) map[*nftables.Set][]nftables.SetElement {
	fw.liveMu.Lock()
	defer fw.liveMu.Unlock()
	out := make(map[*nftables.Set][]nftables.SetElement)
	for id, e := range fw.live {
		left := e.deadline.Sub(now)
		if left < time.Millisecond {
			// Expired in the kernel too (or about to): not worth a hole.
			delete(fw.live, id)
			continue
		}
		out[e.set] = append(out[e.set], nftables.SetElement{Key: e.key, Timeout: left, Comment: e.label})
	}
	return out
}

// maxBatch bounds how many sessions' changes share one transaction.
const maxBatch = 64

// change is one session's Open, Close, Ban or Unban waiting in the queue.
type change struct {
	queue func() error
	// err is the outcome, set by the leader that commits the change
	// before it sends done on wake.
	err error
	// wake tells a waiting caller its next step. The result travels with
	// the wake-up, so that a batch's followers return without taking
	// commitQueue.mu again. Buffered, so that the sender never blocks;
	// made only for callers that wait, as nobody wakes a leader.
	wake chan step
}

// step is what a waiting caller is woken to do.
type step uint8

const (
	done     step = iota // its batch is committed: return err
	lead                 // commit the next batch
	released             // Release failed it: return ErrReleased
)

// signal wakes c's caller and reports whether the signal was delivered.
// Only one signal counts: a second one (Release failing a caller who was
// just woken to lead) is dropped rather than blocking the sender, and the
// caller then finds the queue closed.
func (c *change) signal(s step) bool {
	select {
	case c.wake <- s:
		return true
	default:
		return false
	}
}

// commitQueue is the group commit's state. mu is held only to queue and
// dequeue, never across kernel I/O, and never together with NFTables.mu.
type commitQueue struct {
	mu sync.Mutex
	// pending are the changes not yet taken into a transaction, in
	// arrival order. Whenever pending is non-empty, leading is set: the
	// leader hands over to pending[0] when it is done.
	pending []*change
	// leading is set while some caller is (or is about to start)
	// committing a batch.
	leading bool
	// closed is set by Release: no change is queued from then on.
	closed bool
	// batch is the leader's buffer, reused: there is one leader at a time
	// and it changes hands under mu.
	batch []*change
	// waking counts followers woken with their result that have not run
	// yet (see lead).
	waking atomic.Int32
}

// flush commits one change and returns once the kernel has it. Changes that
// arrive while a transaction is in flight are committed together in the next
// one (group commit): the kernel work per transaction is mostly fixed, so
// under many concurrent sessions this keeps both throughput and tail latency
// where a single session has them, instead of queueing every session behind
// a mutex.
//
// The commit runs on a caller's own goroutine, not on a dedicated committer
// (leader/follower, as in LevelDB's write queue): the caller that finds no
// commit in flight becomes the leader and commits the pending batch, which
// starts with its own change, itself; callers arriving meanwhile queue and
// sleep. A lone session (the common case: one client uploading many files)
// thus commits without waking any other goroutine, where a committer
// goroutine cost two goroutine switches, usually futex wakes of another OS
// thread, per change. Under load, a follower costs one wake-up (it cost two)
// and each batch one more, for the next leader.
func (fw *NFTables) flush(queue func() error) error {
	c := &change{queue: queue}
	q := &fw.queue
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrReleased
	}
	q.pending = append(q.pending, c)
	if q.leading {
		c.wake = make(chan step, 1)
		q.mu.Unlock()
		switch <-c.wake {
		case done:
			q.waking.Add(-1)
			return c.err
		case released:
			return ErrReleased
		}
		// Woken to lead: the previous leader left leading set for us.
		q.mu.Lock()
		if q.closed {
			// Release failed c (it was pending) after we were woken.
			q.leading = false
			q.mu.Unlock()
			return ErrReleased
		}
	}
	q.leading = true
	fw.lead(c)
	return c.err
}

// lead commits one batch as the leader, then hands leadership to the next
// waiting caller, if any, instead of committing its work too: a leader that
// kept going while others arrive would never return to its own session.
// c, the leader's change, is pending[0]: a new leader found pending empty,
// and a woken one was pending[0] when woken, and pending only grows at the
// back meanwhile. Called with q.mu held; returns with it released.
func (fw *NFTables) lead(c *change) {
	q := &fw.queue
	n := min(len(q.pending), maxBatch)
	batch := append(q.batch[:0], q.pending[:n]...)
	clear(q.pending[copy(q.pending, q.pending[n:]):])
	q.pending = q.pending[:len(q.pending)-n]
	q.mu.Unlock()
	// Deferred so that even a panic in commit (ftpserverlib recovers
	// panics in command handlers, so the process lives on) releases the
	// batch's followers and the leadership; otherwise every later change
	// would wait forever.
	defer func() {
		// The batch is out of pending, so nobody else signals its
		// followers.
		for _, b := range batch {
			if b != c {
				q.waking.Add(1)
				if !b.signal(done) {
					q.waking.Add(-1)
				}
			}
		}
		// Before choosing the next leader, let the followers just woken
		// run (bounded: on a loaded machine they may not get a CPU
		// soon): a session that goes on to its next change, as a busy
		// one does, queues it now and joins the next batch instead of
		// making the one after. Without this, 16 busy sessions got 2
		// changes per transaction instead of 10, as the next leader took
		// its batch before the others were back. Only under contention:
		// a lone caller's batch has no followers.
		for i := 0; i < len(batch) && q.waking.Load() > 0; i++ {
			runtime.Gosched()
		}
		q.mu.Lock()
		clear(batch)
		q.batch = batch[:0]
		var next *change
		if len(q.pending) > 0 {
			next = q.pending[0]
		} else {
			q.leading = false
		}
		q.mu.Unlock()
		if next != nil {
			next.signal(lead)
		}
	}()
	for _, b := range batch {
		b.err = errCommitAborted
	}
	fw.commit(batch)
}

// errCommitAborted is the outcome of a change whose commit did not finish
// (a panic while committing).
var errCommitAborted = errors.New("nftables commit aborted")

// close fails every waiting change with ErrReleased and every later one
// right away. A batch already being committed completes (or fails with
// ErrReleased under NFTables.mu).
func (q *commitQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for _, c := range q.pending {
		c.signal(released)
	}
	clear(q.pending)
	q.pending = q.pending[:0]
}

// commit sends a batch as one transaction. If that fails, each change is
// retried in a transaction of its own, so one session's failure never
// becomes another's (DESIGN.md §3: an aborted batch aborts every change in it).
// It sets every change's err.
func (fw *NFTables) commit(batch []*change) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.released {
		for _, c := range batch {
			c.err = ErrReleased
		}
		return
	}
	if len(batch) > 1 {
		queued := true
		for _, c := range batch {
			if err := c.queue(); err != nil {
				queued = false
				break
			}
		}
		if queued && fw.conn.Flush() == nil {
			for _, c := range batch {
				c.err = nil
			}
			return
		}
		// After a failed queue or flush the Conn may hold queued messages
		// or unread acknowledgements: start the retries on a fresh one.
		fw.redial()
	}
	for _, c := range batch {
		c.err = fw.commitOne(c.queue)
	}
}

// commitOne commits a single change as its own transaction. Must be called with mu held.
func (fw *NFTables) commitOne(queue func() error) error {
	if err := queue(); err != nil {
		// Part of the change may already sit in the Conn's queue, and
		// the next Flush would send it: start over on a new Conn.
		fw.redial()
		return err
	}
	err := fw.conn.Flush()
	if err == nil {
		return nil
	}
	fw.redial()
	if !isErrno(err, unix.ENOENT) {
		return classify(err)
	}
	// ENOENT: the table or a set may have just been removed, and the
	// watcher may not have restored it yet. Restore here, so that this
	// session does not notice, then try once more.
	if restored, rerr := fw.repairLocked(time.Now()); rerr != nil || !restored {
		return classify(err)
	}
	if err := queue(); err != nil {
		fw.redial()
		return err
	}
	if err := fw.conn.Flush(); err != nil {
		fw.redial()
		return classify(err)
	}
	return nil
}

// redial replaces the connection, dropping anything queued on the old one.
// Must be called with mu held.
func (fw *NFTables) redial() {
	conn, err := dial(fw.cfg, true)
	if err != nil {
		slog.Warn("nftables: cannot replace netlink connection", "table", fw.cfg.Table, "err", err)
		return
	}
	_ = fw.conn.CloseLasting()
	fw.conn = conn
}

// List returns the pinholes in the kernel, sorted by client then port.
func (fw *NFTables) List() ([]Pinhole, error) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.released {
		return nil, fmt.Errorf("list pinholes: %w", ErrReleased)
	}
	var out []Pinhole
	for _, set := range []*nftables.Set{fw.set4, fw.set6} {
		elems, err := fw.conn.GetSetElements(set)
		if err != nil {
			return nil, fmt.Errorf("list pinholes: set %s: %w", set.Name, classify(err))
		}
		for _, e := range elems {
			p, ok := decodeKey(e.Key)
			if !ok {
				return nil, fmt.Errorf("list pinholes: set %s: unexpected key %x", set.Name, e.Key)
			}
			p.Label, p.Expires = e.Comment, e.Expires
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b Pinhole) int {
		if c := a.Client.Compare(b.Client); c != 0 {
			return c
		}
		return cmp.Compare(a.Port, b.Port)
	})
	return out, nil
}

func decodeKey(k []byte) (Pinhole, bool) {
	switch len(k) {
	case key4Len:
		return Pinhole{Client: netip.AddrFrom4([4]byte(k[:4])), Port: binary.BigEndian.Uint16(k[4:])}, true
	case key6Len:
		return Pinhole{Client: netip.AddrFrom16([16]byte(k[:16])), Port: binary.BigEndian.Uint16(k[16:])}, true
	}
	return Pinhole{}, false
}

// Stats reads the drop rule's counter.
func (fw *NFTables) Stats() (Stats, error) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.released {
		return Stats{}, fmt.Errorf("read drop counter: %w", ErrReleased)
	}
	rules, err := fw.conn.GetRules(fw.table, fw.chain)
	if err != nil {
		return Stats{}, fmt.Errorf("read drop counter: %w", classify(err))
	}
	for _, r := range rules {
		if len(r.Exprs) < 2 {
			continue
		}
		c, ok := r.Exprs[len(r.Exprs)-2].(*expr.Counter)
		v, isVerdict := r.Exprs[len(r.Exprs)-1].(*expr.Verdict)
		if ok && isVerdict && v.Kind == expr.VerdictDrop {
			return Stats{DroppedPackets: c.Packets, DroppedBytes: c.Bytes}, nil
		}
	}
	return Stats{}, fmt.Errorf("read drop counter: no counter drop rule in chain %s of table inet %s (changed by hand?)", chainName, fw.cfg.Table)
}

// Release stops the watcher and closes the netlink connections, leaving
// the table in place so the range stays guarded (fail closed). Later calls
// fail with ErrReleased.
func (fw *NFTables) Release() error {
	// First and outside mu: callers waiting for a transaction get
	// ErrReleased now, not after the one in flight (which holds mu).
	fw.queue.close()
	fw.mu.Lock()
	if fw.released {
		fw.mu.Unlock()
		return nil
	}
	fw.released = true
	fw.mu.Unlock()
	// Outside mu: a restore in progress holds it, and gives up once it
	// sees released.
	if fw.watch != nil {
		fw.watch.stop()
	}
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if err := fw.conn.CloseLasting(); err != nil {
		return fmt.Errorf("release nftables connection: %w", err)
	}
	return nil
}

// classify adds the two causes an operator can act on to a kernel error,
// keeping the original error in the chain.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrPermission), errors.Is(err, ErrUnsupported):
		return err
	case isErrno(err, unix.EPERM), isErrno(err, unix.EACCES):
		return fmt.Errorf("%w: %w", ErrPermission, err)
	case isErrno(err, unix.EPROTONOSUPPORT), isErrno(err, unix.EAFNOSUPPORT), isErrno(err, unix.EOPNOTSUPP):
		// EPROTONOSUPPORT: no nfnetlink at all; EOPNOTSUPP: no
		// nf_tables subsystem; EAFNOSUPPORT: no inet family.
		return fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	return err
}

// isErrno matches errno both in wrapped errors and in the text of errors
// that google/nftables formats with %v (its dump calls), which drops the
// chain.
func isErrno(err error, errno syscall.Errno) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, errno) {
		return true
	}
	return strings.Contains(err.Error(), errno.Error())
}
