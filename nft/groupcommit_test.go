package nft

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/internal/testns"
	"github.com/google/nftables"
)

// waitFor is how long any step of these tests may take; far more than a
// loaded machine needs, and only reached when something hangs.
const waitFor = 10 * time.Second

// gatedLeader makes a caller the commit leader and holds it inside its
// transaction (under fw.mu) until open is called, so that the test can queue
// callers behind it. Its change adds {192.0.2.200 . port}. The returned
// channel yields the leader's result.
func gatedLeader(t *testing.T, fw *NFTables, port uint16) (open func(), result <-chan error) {
	t.Helper()
	set, key, err := fw.element(addr("192.0.2.200"), port)
	if err != nil {
		t.Fatal(err)
	}
	gate, entered, res := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		res <- fw.flush(func() error {
			close(entered)
			<-gate
			return fw.conn.SetAddElements(set, []nftables.SetElement{{Key: key, Timeout: time.Minute}})
		})
	}()
	select {
	case <-entered:
	case <-time.After(waitFor):
		t.Fatal("the first caller did not start committing")
	}
	open = sync.OnceFunc(func() { close(gate) })
	t.Cleanup(open) // never leave the leader (and fw.mu) stuck
	return open, res
}

// waitPending waits until n changes wait in the queue.
func waitPending(t *testing.T, fw *NFTables, n int) {
	t.Helper()
	for deadline := time.Now().Add(waitFor); ; time.Sleep(time.Millisecond) {
		fw.queue.mu.Lock()
		got := len(fw.queue.pending)
		fw.queue.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d changes queued, want %d", got, n)
		}
	}
}

// queueIdle fails unless no change waits and no leader is left.
func queueIdle(t *testing.T, fw *NFTables) {
	t.Helper()
	fw.queue.mu.Lock()
	defer fw.queue.mu.Unlock()
	if len(fw.queue.pending) != 0 || fw.queue.leading {
		t.Errorf("queue not idle: %d pending, leading %v", len(fw.queue.pending), fw.queue.leading)
	}
}

// collect waits for n results, failing on a hang.
func collect(t *testing.T, errs <-chan error, n int, what string) []error {
	t.Helper()
	var out []error
	for range n {
		select {
		case err := <-errs:
			out = append(out, err)
		case <-time.After(waitFor):
			t.Fatalf("%s: %d of %d callers still blocked after %v", what, n-len(out), n, waitFor)
		}
	}
	return out
}

// TestGroupCommitConcurrent: many sessions opening and closing pinholes at
// once all succeed, and the kernel ends with exactly the pinholes that
// should remain, labels included.
func TestGroupCommitConcurrent(t *testing.T) {
	ns := testns.New(t)
	fw := setup(t, ns, Config{PortMin: 50000, PortMax: 50999, Timeout: time.Minute})
	const (
		sessions = 32
		ports    = 30 // per session, disjoint
	)
	client := func(s int) netip.Addr {
		if s%2 == 0 {
			return netip.AddrFrom4([4]byte{192, 0, 2, byte(s + 1)})
		}
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(s + 1)})
	}
	label := func(s, i int) string { return fmt.Sprintf("s=%d i=%d", s, i) }
	gen0 := generation(t, fw)
	errs := make(chan error, sessions)
	for s := range sessions {
		go func() {
			errs <- func() error {
				// Open all, close every other one, and close a
				// pinhole that was never opened.
				for i := range ports {
					p := Pinhole{Client: client(s), Port: uint16(50000 + s*ports + i), Label: label(s, i)}
					if err := fw.Open(p); err != nil {
						return err
					}
				}
				for i := 0; i < ports; i += 2 {
					if err := fw.Close(client(s), uint16(50000+s*ports+i)); err != nil {
						return err
					}
				}
				return fw.Close(client(s), 50999)
			}()
		}()
	}
	for _, err := range collect(t, errs, sessions, "concurrent sessions") {
		if err != nil {
			t.Error(err)
		}
	}
	var want []Pinhole
	for s := range sessions {
		for i := 1; i < ports; i += 2 {
			want = append(want, Pinhole{Client: client(s), Port: uint16(50000 + s*ports + i), Label: label(s, i)})
		}
	}
	key := func(p Pinhole) string { return fmt.Sprintf("%v %s", netip.AddrPortFrom(p.Client, p.Port), p.Label) }
	var got []string
	for _, p := range mustList(t, fw) {
		got = append(got, key(p))
	}
	var exp []string
	for _, p := range want {
		exp = append(exp, key(p))
	}
	slices.Sort(got)
	slices.Sort(exp)
	if !slices.Equal(got, exp) {
		t.Errorf("kernel has %d pinholes, want %d:\ngot  %v\nwant %v", len(got), len(exp), got, exp)
	}
	// At most one transaction per change; fewer when they were batched.
	changes := uint32(sessions * (ports + ports/2 + 1))
	if n := generation(t, fw) - gen0; n > changes {
		t.Errorf("%d transactions for %d changes", n, changes)
	}
	queueIdle(t, fw)
}

// TestGroupCommitLeader: callers that arrive while a transaction is in flight
// are committed together in the next one (at most maxBatch per
// transaction) by one of them, and the leader returns once its own change is
// in, without committing theirs.
func TestGroupCommitLeader(t *testing.T) {
	ns := testns.New(t)
	fw := setup(t, ns, Config{PortMin: 50000, PortMax: 50999, Timeout: time.Minute})
	gen0 := generation(t, fw)
	openLeader, leader := gatedLeader(t, fw, 50000)

	const followers = maxBatch + 6
	gate := make(chan struct{})
	openGate := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(openGate)
	entered := make(chan struct{}, followers)
	errs := make(chan error, followers)
	for i := range followers {
		set, key, err := fw.element(addr("192.0.2.201"), uint16(50100+i))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			errs <- fw.flush(func() error {
				entered <- struct{}{}
				<-gate
				return fw.conn.SetAddElements(set, []nftables.SetElement{{Key: key, Timeout: time.Minute}})
			})
		}()
	}
	waitPending(t, fw, followers)

	openLeader()
	// The followers' first batch is held at gate, so a leader that went
	// on to commit it would not return here.
	if err := collect(t, leader, 1, "leader")[0]; err != nil {
		t.Fatalf("leader: %v", err)
	}
	// Someone else was woken to lead the next batch.
	select {
	case <-entered:
	case <-time.After(waitFor):
		t.Fatal("no follower was woken to commit the queued changes")
	}
	openGate()
	for _, err := range collect(t, errs, followers, "followers") {
		if err != nil {
			t.Error(err)
		}
	}
	if n := len(mustList(t, fw)); n != followers+1 {
		t.Errorf("%d pinholes, want %d", n, followers+1)
	}
	// The leader's own transaction, then the followers in full batches.
	if n := generation(t, fw) - gen0; n != 3 {
		t.Errorf("%d transactions, want 3 (leader, %d followers, %d followers)", n, maxBatch, followers-maxBatch)
	}
	queueIdle(t, fw)
}

// TestGroupCommitQueuedFailure: a change that fails fails alone, also when
// it was queued with others (the batch is retried change by change).
func TestGroupCommitQueuedFailure(t *testing.T) {
	ns := testns.New(t)
	fw := setup(t, ns, Config{PortMin: 50000, PortMax: 50999, Timeout: time.Minute})
	openLeader, leader := gatedLeader(t, fw, 50000)
	missing := &nftables.Set{Table: fw.table, Name: "no_such_set", KeyType: key4Type, Concatenation: true, HasTimeout: true}
	type result struct {
		port uint16 // 0: the bad change
		err  error
	}
	results := make(chan result, 5)
	for i := range 5 {
		port := uint16(50100 + i)
		set, key, err := fw.element(addr("192.0.2.201"), port)
		if err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			set, port = missing, 0
		}
		go func() {
			err := fw.flush(func() error {
				return fw.conn.SetAddElements(set, []nftables.SetElement{{Key: key, Timeout: time.Minute}})
			})
			results <- result{port, err}
		}()
	}
	waitPending(t, fw, 5)
	openLeader()
	if err := collect(t, leader, 1, "leader")[0]; err != nil {
		t.Fatalf("leader: %v", err)
	}
	for range 5 {
		select {
		case r := <-results:
			if r.port == 0 && r.err == nil {
				t.Error("the change to a missing set reported success")
			}
			if r.port != 0 && r.err != nil {
				t.Errorf("change for port %d failed with its batch: %v", r.port, r.err)
			}
		case <-time.After(waitFor):
			t.Fatal("a queued caller is still blocked")
		}
	}
	if n := len(mustList(t, fw)); n != 5 {
		t.Errorf("%d pinholes, want the leader's and the 4 good ones", n)
	}
	queueIdle(t, fw)
}

// TestReleaseWhileQueued: Release fails every caller waiting for a
// transaction with ErrReleased at once, without waiting for the one in
// flight, and leaves nobody blocked.
func TestReleaseWhileQueued(t *testing.T) {
	ns := testns.New(t)
	fw := setup(t, ns, Config{PortMin: 50000, PortMax: 50999, Timeout: time.Minute})
	openLeader, leader := gatedLeader(t, fw, 50000)
	const waiters = 40
	errs := make(chan error, waiters)
	for i := range waiters {
		go func() {
			errs <- fw.Open(Pinhole{Client: addr("192.0.2.201"), Port: uint16(50100 + i)})
		}()
	}
	waitPending(t, fw, waiters)

	released := make(chan error, 1)
	go func() { released <- fw.Release() }()
	// The leader still holds its transaction open.
	for _, err := range collect(t, errs, waiters, "queued callers after Release") {
		if !errors.Is(err, ErrReleased) {
			t.Errorf("queued Open = %v; want ErrReleased", err)
		}
	}
	openLeader()
	// The leader was past the released check: its change commits.
	if err := collect(t, leader, 1, "leader")[0]; err != nil {
		t.Errorf("leader: %v", err)
	}
	if err := collect(t, released, 1, "Release")[0]; err != nil {
		t.Errorf("Release: %v", err)
	}
	if err := fw.Open(Pinhole{Client: addr("192.0.2.201"), Port: 50001}); !errors.Is(err, ErrReleased) {
		t.Errorf("Open after Release = %v; want ErrReleased", err)
	}
	queueIdle(t, fw)
	fw.liveMu.Lock()
	defer fw.liveMu.Unlock()
	if len(fw.live) != 0 {
		t.Errorf("%d failed Opens still recorded as live", len(fw.live))
	}
}

// TestGroupCommitSurvivesPanic: ftpserverlib recovers a panic in a command
// handler, so a leader that panics while committing must still release
// leadership; later changes would otherwise wait forever.
func TestGroupCommitSurvivesPanic(t *testing.T) {
	ns := testns.New(t)
	fw := setup(t, ns, Config{PortMin: 50000, PortMax: 50999, Timeout: time.Minute})
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the panic did not reach the leader's caller")
			}
		}()
		_ = fw.flush(func() error { panic("queue") })
	}()
	done := make(chan error, 1)
	go func() { done <- fw.Open(Pinhole{Client: addr("192.0.2.1"), Port: 50001}) }()
	if err := collect(t, done, 1, "Open after a panicking commit")[0]; err != nil {
		t.Fatalf("Open after a panicking commit: %v", err)
	}
	if n := len(mustList(t, fw)); n != 1 {
		t.Errorf("%d pinholes, want 1", n)
	}
	queueIdle(t, fw)
}
