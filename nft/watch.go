package nft

// The table watcher: other tools reload the ruleset (`systemctl restart
// nftables` starts with `flush ruleset`), firewall managers replace it, an
// admin deletes a table by hand. Each of those removes ftpsd's guard, and
// with it the pinholes clients are about to use. The watcher notices, from
// nftables' netlink events and from a periodic check, and restores the whole
// table, with the live pinholes and the time they have left, in one
// transaction.

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// watcher owns two netlink sockets of its own: a multicast subscription to
// nftables events and a connection for read-only checks, so that neither
// waits for (nor delays) the pinhole path on fw.conn.
type watcher struct {
	fw    *NFTables
	monMu sync.Mutex // guards mon against stop while resubscribing
	mon   *netlink.Conn
	check *nftables.Conn
	kick  chan time.Time // buffered 1: a check is due, noticed at this time
	quit  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

// eventFilter keeps, in the kernel, only the events that can concern a
// table's structure. Element and generation events (one per pinhole opened
// or closed) are dropped before they reach the socket, so the pinhole path
// wakes nobody and cannot overflow the socket's buffer.
func eventFilter() ([]bpf.RawInstruction, error) {
	// nlmsg_type is host-endian at offset 4; its low byte is the nftables
	// message type (the high byte is the subsystem, always nftables here).
	off := uint32(4)
	if !nativeLittleEndian() {
		off = 5
	}
	return bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: off, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.NFT_MSG_NEWSETELEM, SkipTrue: 3},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.NFT_MSG_DELSETELEM, SkipTrue: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.NFT_MSG_NEWGEN, SkipTrue: 1},
		bpf.RetConstant{Val: 0xffff_ffff},
		bpf.RetConstant{Val: 0},
	})
}

func nativeLittleEndian() bool {
	return binary.NativeEndian.Uint16([]byte{1, 0}) == 1
}

func startWatcher(fw *NFTables) (*watcher, error) {
	mon, err := subscribe(fw.cfg)
	if err != nil {
		return nil, err
	}
	check, err := dial(fw.cfg, true)
	if err != nil {
		mon.Close()
		return nil, err
	}
	w := &watcher{fw: fw, mon: mon, check: check, kick: make(chan time.Time, 1), quit: make(chan struct{})}
	w.wg.Add(1)
	go w.loop()
	if !fw.cfg.noEvents {
		w.wg.Add(1)
		go w.listen()
	}
	return w, nil
}

// subscribe opens a socket that receives nftables' structural events.
func subscribe(cfg Config) (*netlink.Conn, error) {
	mon, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: cfg.NetNSFd})
	if err != nil {
		return nil, fmt.Errorf("open netlink event socket: %w", classify(err))
	}
	filter, err := eventFilter()
	if err == nil {
		err = mon.SetBPF(filter)
	}
	if err == nil {
		// A `flush ruleset` of a large host ruleset is a burst of events;
		// an overflow is survivable (it triggers a check) but avoidable.
		_ = mon.SetReadBuffer(1 << 20)
		err = mon.JoinGroup(unix.NFNLGRP_NFTABLES)
	}
	if err != nil {
		mon.Close()
		return nil, fmt.Errorf("subscribe to nftables events: %w", classify(err))
	}
	return mon, nil
}

func (w *watcher) stop() {
	w.once.Do(func() {
		w.monMu.Lock()
		close(w.quit)
		w.mon.Close()
		w.monMu.Unlock()
		w.wg.Wait()
		_ = w.check.CloseLasting()
	})
}

// due asks for a check without blocking; one pending check covers any
// number of events.
func (w *watcher) due(noticed time.Time) {
	select {
	case w.kick <- noticed:
	default:
	}
}

// listen reads nftables events and asks for a check on any that touches a
// table of ftpsd's name.
func (w *watcher) listen() {
	defer w.wg.Done()
	for {
		msgs, err := w.mon.Receive()
		now := time.Now()
		if err != nil {
			select {
			case <-w.quit:
				return
			default:
			}
			// ENOBUFS: events were lost. Either way the table may have
			// changed unseen, so check it.
			w.due(now)
			if !isErrno(err, unix.ENOBUFS) {
				// Unexpected: start over on a new socket, leaving the
				// periodic check in charge meanwhile.
				w.fw.cfg.Logger.Warn("nftables event socket failed; resubscribing", "table", "inet "+w.fw.cfg.Table, "err", err)
				if !w.resubscribe() {
					return
				}
			}
			continue
		}
		for _, m := range msgs {
			if w.concerns(m) {
				w.due(now)
				break
			}
		}
	}
}

// resubscribe replaces the event socket, retrying every second until it
// works or the watcher stops; it reports false when the watcher stopped.
func (w *watcher) resubscribe() bool {
	for {
		mon, err := subscribe(w.fw.cfg)
		if err == nil {
			w.monMu.Lock()
			select {
			case <-w.quit:
				w.monMu.Unlock()
				mon.Close()
				return false
			default:
			}
			w.mon.Close()
			w.mon = mon
			w.monMu.Unlock()
			return true
		}
		select {
		case <-w.quit:
			return false
		case <-time.After(time.Second):
		}
	}
}

// concerns reports whether an event names ftpsd's table: the first
// attribute of table, chain, rule, set and object messages is the table's
// name, after the nfgenmsg header whose first byte is the family.
func (w *watcher) concerns(m netlink.Message) bool {
	if len(m.Data) < 4 || m.Data[0] != unix.NFPROTO_INET {
		return false
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return true // undecodable: check rather than guess
	}
	for ad.Next() {
		if ad.Type() == 1 {
			return ad.String() == w.fw.cfg.Table
		}
	}
	return false
}

// loop runs checks: when an event asks, and every CheckInterval.
func (w *watcher) loop() {
	defer w.wg.Done()
	tick := time.NewTicker(w.fw.cfg.CheckInterval)
	defer tick.Stop()
	var retry *time.Timer
	backoff := 50 * time.Millisecond
	for {
		var noticed time.Time
		select {
		case <-w.quit:
			if retry != nil {
				retry.Stop()
			}
			return
		case noticed = <-w.kick:
		case noticed = <-tick.C:
		}
		if err := w.run(noticed); err != nil {
			w.fw.cfg.Logger.Error("nftables table damaged and not restored; new pinholes fail until it is (will retry)",
				"table", "inet "+w.fw.cfg.Table, "err", err, "retry_in", backoff)
			if retry != nil {
				retry.Stop()
			}
			retry = time.AfterFunc(backoff, func() { w.due(time.Now()) })
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
	}
}

// run checks the table on the watcher's own connection and, only if it is
// damaged, takes the pinhole path's lock to check again and restore.
func (w *watcher) run(noticed time.Time) error {
	missing, err := w.fw.verify(w.check)
	if err != nil {
		// The check connection may be the broken part.
		if conn, derr := dial(w.fw.cfg, true); derr == nil {
			_ = w.check.CloseLasting()
			w.check = conn
		}
		return fmt.Errorf("check table: %w", err)
	}
	if missing == "" {
		w.fw.syncBans(w.check)
		return nil
	}
	w.fw.mu.Lock()
	defer w.fw.mu.Unlock()
	if w.fw.released {
		return nil
	}
	_, err = w.fw.repairLocked(noticed)
	return err
}

// repairLocked checks the table on fw.conn and restores it if damaged. It
// reports whether it restored. Must be called with mu held.
func (fw *NFTables) repairLocked(noticed time.Time) (bool, error) {
	missing, err := fw.verify(fw.conn)
	if err != nil {
		fw.redial()
		return false, fmt.Errorf("check table: %w", err)
	}
	if missing == "" {
		return false, nil
	}
	now := time.Now()
	elems := fw.liveElements(now)
	pinholes := 0
	for _, e := range elems {
		pinholes += len(e)
	}
	bans := fw.banElements(now)
	for set, e := range bans {
		elems[set] = e
	}
	if err := fw.queueTable(elems); err != nil {
		fw.redial()
		return false, fmt.Errorf("restore table inet %s: %w", fw.cfg.Table, err)
	}
	if err := fw.conn.Flush(); err != nil {
		fw.redial()
		return false, fmt.Errorf("restore table inet %s: %w", fw.cfg.Table, classify(err))
	}
	n := pinholes
	r := Restore{At: time.Now(), Missing: missing, Pinholes: n, Bans: (len(bans[fw.ban4]) + len(bans[fw.ban6])) / 2}
	r.Took = r.At.Sub(noticed)
	fw.restores.Count++
	fw.restores.Last = r
	fw.cfg.Logger.Warn("nftables table was removed or altered by something else; restored it",
		"table", "inet "+fw.cfg.Table, "missing", missing, "took", r.Took, "pinholes", n, "bans", r.Bans, "restores", fw.restores.Count)
	if fw.cfg.OnRestore != nil {
		go fw.cfg.OnRestore(r)
	}
	return true, nil
}

// Restores returns how often the table was restored, and the last restore.
func (fw *NFTables) Restores() Restores {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return fw.restores
}

// verify compares the table in the kernel with the one ftpsd made and says
// what is missing or different ("" if nothing). Set contents are not
// compared: pinholes come and go, and a hand-deleted pinhole fails closed.
func (fw *NFTables) verify(conn *nftables.Conn) (string, error) {
	if _, err := conn.ListTableOfFamily(fw.cfg.Table, nftables.TableFamilyINet); err != nil {
		if isErrno(err, unix.ENOENT) {
			return "table", nil
		}
		return "", classify(err)
	}
	var missing []string
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return "", classify(err)
	}
	guard := false
	for _, c := range chains {
		if c.Table == nil || c.Table.Name != fw.cfg.Table {
			continue
		}
		if c.Name != chainName {
			missing = append(missing, "foreign chain "+c.Name)
			continue
		}
		guard = true
		if !sameChain(c, fw.chain) {
			missing = append(missing, "chain "+chainName+" (type, hook, priority or policy)")
		}
	}
	if !guard {
		missing = append(missing, "chain "+chainName)
	} else {
		rules, err := conn.GetRules(fw.table, fw.chain)
		if err != nil && !isErrno(err, unix.ENOENT) {
			return "", classify(err)
		}
		if !sameRules(rules, fw.guardRules()) {
			missing = append(missing, "rules of chain "+chainName)
		}
	}
	sets, err := conn.GetSets(fw.table)
	if err != nil && !isErrno(err, unix.ENOENT) {
		return "", classify(err)
	}
	for _, want := range fw.sets() {
		i := slices.IndexFunc(sets, func(s *nftables.Set) bool { return s.Name == want.Name })
		switch {
		case i < 0:
			missing = append(missing, "set "+want.Name)
		case !sameSet(sets[i], want):
			missing = append(missing, "set "+want.Name+" (type or flags)")
		}
	}
	for _, s := range sets {
		if !slices.ContainsFunc(fw.sets(), func(w *nftables.Set) bool { return w.Name == s.Name }) {
			missing = append(missing, "foreign set "+s.Name)
		}
	}
	return strings.Join(missing, ", "), nil
}

func sameChain(got, want *nftables.Chain) bool {
	return got.Type == want.Type &&
		got.Hooknum != nil && *got.Hooknum == *want.Hooknum &&
		got.Priority != nil && *got.Priority == *want.Priority &&
		got.Policy != nil && *got.Policy == *want.Policy
}

func sameSet(got, want *nftables.Set) bool {
	return got.HasTimeout == want.HasTimeout && got.Concatenation == want.Concatenation &&
		got.KeyType.Bytes == want.KeyType.Bytes && got.Interval == want.Interval && !got.Constant && !got.Anonymous
}

// sameRules compares rules expression by expression, ignoring what the
// kernel fills in or counts (counter values, set IDs of the request).
func sameRules(got, want []*nftables.Rule) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		g, w := normalize(got[i].Exprs), normalize(want[i].Exprs)
		if !reflect.DeepEqual(g, w) {
			return false
		}
	}
	return true
}

func normalize(es []expr.Any) []expr.Any {
	out := make([]expr.Any, len(es))
	for i, e := range es {
		switch v := e.(type) {
		case *expr.Counter:
			out[i] = &expr.Counter{}
		case *expr.Lookup:
			c := *v
			c.SetID = 0
			out[i] = &c
		default:
			out[i] = e
		}
	}
	return out
}
