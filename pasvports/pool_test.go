package pasvports

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/ban"
	"github.com/ftpsd/ftpsd/nft"
)

// fakeFW records open pinholes; failOpen makes Open fail.
type fakeFW struct {
	mu       sync.Mutex
	open     map[string]bool
	opened   int
	failOpen error
}

func newFake() *fakeFW { return &fakeFW{open: map[string]bool{}} }

func key(ip netip.Addr, port uint16) string { return fmt.Sprintf("%s:%d", ip, port) }

func (f *fakeFW) Open(p nft.Pinhole) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failOpen != nil {
		return f.failOpen
	}
	if f.open[key(p.Client, p.Port)] {
		return fmt.Errorf("pinhole %s already open", key(p.Client, p.Port))
	}
	f.open[key(p.Client, p.Port)] = true
	f.opened++
	return nil
}

func (f *fakeFW) Close(ip netip.Addr, port uint16) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.open, key(ip, port))
	return nil
}

func (f *fakeFW) isOpen(ip netip.Addr, port uint16) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.open[key(ip, port)]
}

func (f *fakeFW) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.open)
}

func (f *fakeFW) List() ([]nft.Pinhole, error) { return nil, nil }
func (f *fakeFW) Stats() (nft.Stats, error)    { return nft.Stats{}, nil }
func (f *fakeFW) Release() error               { return nil }

var loopback = netip.MustParseAddr("127.0.0.1")

// listen binds like ftpserverlib does: a candidate from the pool, next on failure.
func listen(t testing.TB, p *Pool) net.Listener {
	t.Helper()
	for range 50 {
		port, ok := p.Candidate()
		if !ok {
			t.Fatal("pool exhausted")
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			return ln
		}
	}
	t.Fatal("no candidate could be bound")
	return nil
}

func testRange(t testing.TB, n int) (uint16, uint16) {
	t.Helper()
	// A high range unlikely to be in use on the test machine.
	return 47000, 47000 + uint16(n) - 1
}

// newPool makes a pool of n ports over a fake firewall.
func newPool(t testing.TB, n int) (*Pool, *fakeFW) {
	t.Helper()
	fw := newFake()
	lo, hi := testRange(t, n)
	p, err := New(lo, hi, fw, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p, fw
}

func TestLeaseOpensAndClosesPinhole(t *testing.T) {
	p, fw := newPool(t, 20)
	ln := listen(t, p)
	l, err := p.Lease(ln, loopback, "user=a session=1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !fw.isOpen(loopback, l.Port()) {
		t.Fatal("pinhole not open after Lease returned")
	}
	if p.Free() != p.Size()-1 {
		t.Fatalf("free = %d, want %d", p.Free(), p.Size()-1)
	}
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			defer c.Close()
			time.Sleep(50 * time.Millisecond)
		}
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if fw.isOpen(loopback, l.Port()) {
		t.Fatal("pinhole still open after the data connection was accepted")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.Close() // idempotent
	if p.Free() != p.Size() {
		t.Fatalf("free = %d after close, want %d", p.Free(), p.Size())
	}
}

func TestLeaseRefusesForeignAddress(t *testing.T) {
	p, fw := newPool(t, 5)
	ln := listen(t, p)
	l, err := p.Lease(ln, loopback, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(done)
			return
		}
		done <- c
	}()
	// A stranger (127.0.0.2) connects first: refused, the lease keeps waiting.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	stranger, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	stranger.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := stranger.Read(make([]byte, 1)); err == nil {
		t.Fatal("stranger's connection was not closed")
	}
	if !fw.isOpen(loopback, l.Port()) {
		t.Fatal("a stranger's attempt closed the client's pinhole")
	}
	owner, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	c := <-done
	if c == nil {
		t.Fatal("owner's connection not accepted")
	}
	c.Close()
}

func TestAcceptTimeoutClosesPinhole(t *testing.T) {
	p, fw := newPool(t, 5)
	ln := listen(t, p)
	l, _ := p.Lease(ln, loopback, "", 0)
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := l.Accept(); err == nil {
		t.Fatal("accept did not time out")
	}
	if fw.count() != 0 {
		t.Fatal("pinhole left open after the accept deadline")
	}
	l.Close()
	if p.Free() != p.Size() {
		t.Fatal("port not returned")
	}
}

func TestFirewallFailureFailsLease(t *testing.T) {
	p, fw := newPool(t, 5)
	fw.failOpen = errors.New("netlink: permission denied")
	ln := listen(t, p)
	defer ln.Close()
	if _, err := p.Lease(ln, loopback, "", 0); err == nil {
		t.Fatal("lease succeeded without a pinhole")
	}
	if p.Free() != p.Size() {
		t.Fatal("failed lease kept its port")
	}
}

func TestNoDoubleLease(t *testing.T) {
	p, _ := newPool(t, 5)
	ln := listen(t, p)
	l, err := p.Lease(ln, loopback, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := p.Lease(ln, netip.MustParseAddr("127.0.0.9"), "", 0); err == nil {
		t.Fatal("the same port was leased twice")
	}
	for range 1000 {
		if c, _ := p.Candidate(); c == l.Port() {
			t.Fatal("a leased port was offered as a candidate")
		}
	}
}

func TestExhaustion(t *testing.T) {
	p, _ := newPool(t, 3)
	p.SetShare(3, nil) // one client may take the whole pool here
	var leases []*Lease
	for range 3 {
		l, err := p.Lease(listen(t, p), loopback, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, l)
	}
	if _, ok := p.Candidate(); ok {
		t.Fatal("candidate offered from an exhausted pool")
	}
	if _, _, ok := p.Getter().FetchNext(); ok {
		t.Fatal("FetchNext succeeded on an exhausted pool")
	}
	leases[1].Close()
	if c, ok := p.Candidate(); !ok || c != leases[1].Port() {
		t.Fatalf("after release candidate = %d, %v", c, ok)
	}
	leases[0].Close()
	leases[2].Close()
}

func TestCandidatesSpreadOverRange(t *testing.T) {
	p, _ := newPool(t, 100)
	seen := map[uint16]int{}
	for range 10000 {
		c, _ := p.Candidate()
		seen[c]++
	}
	if len(seen) != 100 {
		t.Fatalf("10000 candidates covered %d of 100 ports", len(seen))
	}
	for port, n := range seen {
		if n < 40 || n > 200 {
			t.Errorf("port %d drawn %d times of 10000: not uniform", port, n)
		}
	}
	// Successive candidates must not be sequential (predictable).
	prev, _ := p.Candidate()
	seq := 0
	for range 1000 {
		c, _ := p.Candidate()
		if c == prev+1 {
			seq++
		}
		prev = c
	}
	if seq > 50 {
		t.Fatalf("%d of 1000 candidates followed their predecessor", seq)
	}
}

// TestNoLeakAfterManyTransfers runs 10,000 leases from concurrent sessions:
// completed, aborted before connecting and timed out; every port comes back
// and no pinhole is left.
func TestNoLeakAfterManyTransfers(t *testing.T) {
	p, fw := newPool(t, 64)
	const sessions, per = 8, 1250
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				var ln net.Listener
				for {
					port, ok := p.Candidate()
					if !ok {
						time.Sleep(time.Millisecond)
						continue
					}
					var err error
					if ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
						break
					}
				}
				l, err := p.Lease(ln, loopback, "", 0)
				if err != nil {
					ln.Close()
					errs <- fmt.Errorf("session %d transfer %d: %w", s, i, err)
					return
				}
				switch i % 3 {
				case 0: // completed transfer
					go func() {
						if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
							c.Close()
						}
					}()
					if c, err := l.Accept(); err == nil {
						if fw.isOpen(loopback, l.Port()) {
							c.Close()
							l.Close()
							errs <- fmt.Errorf("session %d transfer %d: pinhole open after the data connection arrived", s, i)
							return
						}
						c.Close()
					}
				case 1: // client never connects: new PASV / ABOR closes the lease
				case 2: // accept times out
					ln.(*net.TCPListener).SetDeadline(time.Now())
					l.Accept()
				}
				l.Close()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if p.Free() != p.Size() {
		t.Fatalf("%d ports leaked", p.Size()-p.Free())
	}
	if fw.count() != 0 {
		t.Fatalf("%d pinholes left open", fw.count())
	}
	if fw.opened != sessions*per {
		t.Fatalf("opened %d pinholes, want %d", fw.opened, sessions*per)
	}
}

// The pinhole closes when the client connects, not when the transfer
// command gets round to Accept.
func TestPinholeClosesOnArrival(t *testing.T) {
	p, fw := newPool(t, 5)
	ln := listen(t, p)
	l, err := p.Lease(ln, loopback, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for fw.isOpen(loopback, l.Port()) {
		if time.Now().After(deadline) {
			t.Fatal("pinhole still open after the client connected")
		}
		time.Sleep(5 * time.Millisecond)
	}
	got, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	got.Close()
	if _, err := l.Accept(); err == nil {
		t.Fatal("a second Accept succeeded")
	}
}

// A reply the client never uses ends by itself after wait: port back, hole closed.
func TestUnusedLeaseEndsItself(t *testing.T) {
	p, fw := newPool(t, 5)
	l, err := p.Lease(listen(t, p), loopback, "", 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.Free() != p.Size() || fw.count() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("unused lease still holds its port (free %d/%d) or pinhole (%d)", p.Free(), p.Size(), fw.count())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := l.Accept(); err == nil {
		t.Fatal("Accept on an expired lease succeeded")
	}
	l.Close()
}

// Close while Accept waits: Accept returns, nothing leaks.
func TestCloseUnblocksAccept(t *testing.T) {
	p, fw := newPool(t, 5)
	l, _ := p.Lease(listen(t, p), loopback, "", 0)
	done := make(chan error, 1)
	go func() { _, err := l.Accept(); done <- err }()
	time.Sleep(20 * time.Millisecond)
	l.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Accept succeeded on a closed lease")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still blocked after Close")
	}
	if p.Free() != p.Size() || fw.count() != 0 {
		t.Fatal("leak after Close during Accept")
	}
}

// One source holds at most its share; another still gets ports; IPv6
// addresses of one prefix share one count.
func TestShare(t *testing.T) {
	p, _ := newPool(t, 10)
	if p.Share() != 2 {
		t.Fatalf("default share of 10 ports = %d, want 2", p.Share())
	}
	p.SetShare(0, func(a netip.Addr) netip.Prefix { return ban.Source(a, 64) })
	var held []*Lease
	lease := func(client string) error {
		l, err := p.Lease(listen(t, p), netip.MustParseAddr(client), "", 0)
		if err == nil {
			held = append(held, l)
		}
		return err
	}
	for _, c := range []string{"127.0.0.1", "127.0.0.1"} {
		if err := lease(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := lease("127.0.0.1"); !errors.Is(err, ErrOverShare) {
		t.Fatalf("third lease of one source: %v, want ErrOverShare", err)
	}
	if err := lease("127.0.0.2"); err != nil {
		t.Fatalf("another source refused: %v", err)
	}
	if err := lease("::1"); err != nil {
		t.Fatal(err)
	}
	if err := lease("::2"); err != nil {
		t.Fatal(err)
	}
	if err := lease("::3"); !errors.Is(err, ErrOverShare) {
		t.Fatalf("third lease of one /64: %v, want ErrOverShare", err)
	}
	if p.Free() != 10-5 {
		t.Fatalf("free %d: a refused lease kept its port", p.Free())
	}
	held[0].Close()
	if err := lease("127.0.0.1"); err != nil {
		t.Fatalf("after closing one lease: %v", err)
	}
	for _, l := range held {
		l.Close()
	}
	if p.Free() != 10 || len(p.held) != 0 {
		t.Fatalf("free %d, held %v after closing all", p.Free(), p.held)
	}
}
