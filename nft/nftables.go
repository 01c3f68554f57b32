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
	"syscall"

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

	// mu serialises every use of conn. google/nftables queues messages in
	// the Conn and Flush sends whatever is queued as one kernel
	// transaction, so without it one session's ENOENT delete could abort
	// another session's add; the dump calls also share the socket and
	// would read each other's replies.
	mu       sync.Mutex
	conn     *nftables.Conn
	released bool

	// changes feeds the committer goroutine; quit stops it (Release).
	changes chan *change
	quit    chan struct{}
}

// Setup creates or adopts ftpsd's table: in one transaction it adds the
// table (so the delete cannot fail), deletes it and re-creates it with the
// sets and the guard chain. A restart therefore starts from empty sets, a
// changed port range takes effect, and at no instant is the range
// unguarded. No other table is touched. The returned value keeps one
// lasting netlink connection: a connection per operation would make every
// close wait for an RCU grace period (DESIGN.md §3).
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

	conn.AddTable(fw.table)
	conn.DelTable(fw.table)
	conn.AddTable(fw.table)
	for _, s := range []*nftables.Set{fw.set4, fw.set6} {
		if err := conn.AddSet(s, nil); err != nil {
			_ = conn.CloseLasting()
			return nil, fmt.Errorf("set up table inet %s: add set %s: %w", cfg.Table, s.Name, err)
		}
	}
	conn.AddChain(fw.chain)
	for _, r := range fw.guardRules() {
		conn.AddRule(r)
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
	go fw.committer()
	return fw, nil
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
	go fw.committer()
	return fw, nil
}

// Reset deletes ftpsd's table and nothing else, which unguards the passive
// range; a table that does not exist is not an error.
func Reset(cfg Config) error {
	cfg, err := cfg.withDefaults(false)
	if err != nil {
		return fmt.Errorf("reset nftables: %w", err)
	}
	// A one-off operation: a short-lived connection is fine here.
	conn, err := dial(cfg, false)
	if err != nil {
		return fmt.Errorf("reset table inet %s: %w", cfg.Table, err)
	}
	conn.DelTable(&nftables.Table{Name: cfg.Table, Family: nftables.TableFamilyINet})
	if err := conn.Flush(); err != nil && !isErrno(err, unix.ENOENT) {
		return fmt.Errorf("reset table inet %s: %w", cfg.Table, classify(err))
	}
	return nil
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
		cfg:     cfg,
		conn:    conn,
		table:   t,
		changes: make(chan *change),
		quit:    make(chan struct{}),
		// Fixed IDs instead of google/nftables' global counter (racy
		// across Conns); IDs only need to be unique within a batch.
		set4: &nftables.Set{Table: t, Name: set4Name, ID: 1, KeyType: key4Type, HasTimeout: true, Concatenation: true},
		set6: &nftables.Set{Table: t, Name: set6Name, ID: 2, KeyType: key6Type, HasTimeout: true, Concatenation: true},
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
//	tcp dport A-B ct state new ip saddr . tcp dport @pinholes4 accept
//	tcp dport A-B ct state new ip6 saddr . tcp dport @pinholes6 accept
//	tcp dport A-B ct state new counter drop
//
// The l4proto check guards the port load and the nfproto check guards the
// address load: an inet chain sees both families, and reading "ip saddr"
// from an IPv6 packet would read the wrong bytes.
func (fw *NFTables) guardRules() []*nftables.Rule {
	newInRange := func() []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Range{Op: expr.CmpOpEq, Register: 1,
				FromData: binaryutil.BigEndian.PutUint16(fw.cfg.PortMin),
				ToData:   binaryutil.BigEndian.PutUint16(fw.cfg.PortMax)},
			&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
			// ct state is a host-endian bitmask.
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW),
				Xor:  make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		}
	}
	lookup := func(nfproto byte, addrOff, addrLen, portReg uint32, set *nftables.Set) []expr.Any {
		return append(newInRange(),
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nfproto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: addrOff, Len: addrLen},
			// The port goes into the 32-bit register right after the
			// address: reg 9 after 4 bytes, reg 12 (= reg 2) after 16.
			&expr.Payload{DestRegister: portReg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
			&expr.Verdict{Kind: expr.VerdictAccept},
		)
	}
	rule := func(e []expr.Any) *nftables.Rule {
		return &nftables.Rule{Table: fw.table, Chain: fw.chain, Exprs: e}
	}
	return []*nftables.Rule{
		rule(lookup(unix.NFPROTO_IPV4, 12, 4, 9, fw.set4)),
		rule(lookup(unix.NFPROTO_IPV6, 8, 16, 2, fw.set6)),
		rule(append(newInRange(), &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})),
	}
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
	err = fw.flush(func() error { return fw.conn.SetAddElements(set, []nftables.SetElement{elem}) })
	if err != nil {
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

// maxBatch bounds how many sessions' changes share one transaction.
const maxBatch = 64

// change is one session's Open or Close waiting for the committer.
type change struct {
	queue func() error
	done  chan error
}

// flush hands one change to the committer goroutine and waits until the
// kernel has it. Changes that arrive while a transaction is in flight are
// committed together in the next one (group commit): the kernel work per
// transaction is mostly fixed, so under many concurrent sessions this keeps
// both throughput and tail latency where a single session has them, instead
// of queueing every session behind a mutex.
func (fw *NFTables) flush(queue func() error) error {
	c := &change{queue: queue, done: make(chan error, 1)}
	select {
	case fw.changes <- c:
		return <-c.done
	case <-fw.quit:
		return ErrReleased
	}
}

// committer owns the write side of the connection until Release.
func (fw *NFTables) committer() {
	batch := make([]*change, 0, maxBatch)
	for {
		select {
		case c := <-fw.changes:
			batch = append(batch[:0], c)
			// Let sessions that are about to submit reach the channel, so
			// that under load they join this transaction, not the next.
			runtime.Gosched()
		more:
			for len(batch) < maxBatch {
				select {
				case c := <-fw.changes:
					batch = append(batch, c)
				default:
					break more
				}
			}
			fw.commit(batch)
		case <-fw.quit:
			return
		}
	}
}

// commit sends a batch as one transaction. If that fails, each change is
// retried in a transaction of its own, so one session's failure never
// becomes another's (DESIGN.md §3: an aborted batch aborts every change in it).
func (fw *NFTables) commit(batch []*change) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.released {
		for _, c := range batch {
			c.done <- ErrReleased
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
				c.done <- nil
			}
			return
		}
		// After a failed queue or flush the Conn may hold queued messages
		// or unread acknowledgements: start the retries on a fresh one.
		fw.redial()
	}
	for _, c := range batch {
		c.done <- fw.commitOne(c.queue)
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

// Release closes the netlink connection and leaves the table in place so
// the range stays guarded (fail closed). Later calls fail with ErrReleased.
func (fw *NFTables) Release() error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.released {
		return nil
	}
	fw.released = true
	close(fw.quit)
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
