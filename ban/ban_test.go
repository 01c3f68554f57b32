package ban

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newTracker() *Tracker {
	return New(Config{MaxFailures: 3, Window: time.Minute, Duration: time.Hour, IPv6Prefix: 64,
		Allow: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
}

func TestSource(t *testing.T) {
	cases := map[string]string{
		"198.51.100.7":          "198.51.100.7/32",
		"::ffff:198.51.100.7":   "198.51.100.7/32",
		"2001:db8:1:2:3:4:5:6":  "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1":  "2001:db8:1:2::/64",
		"fe80::1":               "fe80::/64",
		"2001:db8:1:3::1":       "2001:db8:1:3::/64",
		"2001:db8:ffff:ffff::9": "2001:db8:ffff:ffff::/64",
	}
	for in, want := range cases {
		if got := Source(netip.MustParseAddr(in), 64); got.String() != want {
			t.Errorf("Source(%s) = %s, want %s", in, got, want)
		}
	}
	if got := Source(netip.MustParseAddr("2001:db8::1"), 128); got.String() != "2001:db8::1/128" {
		t.Errorf("/128: %s", got)
	}
}

func TestBanAfterMaxFailures(t *testing.T) {
	tr := newTracker()
	a := netip.MustParseAddr("198.51.100.7")
	var delays []time.Duration
	for i := range 2 {
		d, b := tr.Fail(a, WeightFailedLogin, "failed login", t0.Add(time.Duration(i)*time.Second))
		if b != nil {
			t.Fatalf("banned after %d failures", i+1)
		}
		delays = append(delays, d)
	}
	if delays[0] <= 0 || delays[1] <= delays[0] {
		t.Errorf("tarpit delays %v: want positive and growing", delays)
	}
	if _, ok := tr.Banned(a, t0.Add(2*time.Second)); ok {
		t.Fatal("banned before the threshold")
	}
	d, b := tr.Fail(a, WeightFailedLogin, "failed login", t0.Add(2*time.Second))
	if b == nil || d != 0 {
		t.Fatalf("third failure: delay %v ban %v, want a ban", d, b)
	}
	if b.Prefix.String() != "198.51.100.7/32" || !b.Until.Equal(t0.Add(2*time.Second+time.Hour)) || b.Reason != "failed login" {
		t.Errorf("ban %+v", b)
	}
	if _, ok := tr.Banned(a, t0.Add(time.Hour)); !ok {
		t.Error("not banned within the duration")
	}
	if _, ok := tr.Banned(a, t0.Add(2*time.Second+time.Hour)); ok {
		t.Error("still banned when the duration is over")
	}
	if _, ok := tr.Banned(netip.MustParseAddr("198.51.100.8"), t0.Add(time.Minute)); ok {
		t.Error("a neighbour address is banned too")
	}
	// A further failure while banned decides no second ban.
	if _, b := tr.Fail(a, WeightFailedLogin, "x", t0.Add(3*time.Second)); b != nil {
		t.Error("second ban while banned")
	}
}

func TestWindowSlides(t *testing.T) {
	tr := newTracker()
	a := netip.MustParseAddr("198.51.100.7")
	// Two failures, then the third only after the first left the window.
	tr.Fail(a, WeightFailedLogin, "", t0)
	tr.Fail(a, WeightFailedLogin, "", t0.Add(30*time.Second))
	if _, b := tr.Fail(a, WeightFailedLogin, "", t0.Add(61*time.Second)); b != nil {
		t.Fatal("banned although the first failure left the window")
	}
	if _, b := tr.Fail(a, WeightFailedLogin, "", t0.Add(62*time.Second)); b == nil {
		t.Fatal("three failures within a minute did not ban")
	}
}

func TestClearTextWeighsHalf(t *testing.T) {
	tr := newTracker()
	a := netip.MustParseAddr("198.51.100.7")
	for i := range 5 {
		if _, b := tr.Fail(a, WeightClearTextUser, "clear-text USER", t0.Add(time.Duration(i)*time.Second)); b != nil {
			t.Fatalf("banned after %d clear-text USERs, want 6", i+1)
		}
	}
	if _, b := tr.Fail(a, WeightClearTextUser, "clear-text USER", t0.Add(5*time.Second)); b == nil {
		t.Fatal("6 clear-text USERs (3 failures' worth) did not ban")
	}
}

func TestIPv6CountedByPrefix(t *testing.T) {
	tr := newTracker()
	// Three addresses of one /64: one source.
	for i, s := range []string{"2001:db8:0:1::1", "2001:db8:0:1::2", "2001:db8:0:1:ffff::3"} {
		_, b := tr.Fail(netip.MustParseAddr(s), WeightFailedLogin, "failed login", t0.Add(time.Duration(i)*time.Second))
		if (b != nil) != (i == 2) {
			t.Fatalf("failure %d from %s: ban %v", i+1, s, b)
		}
		if b != nil && b.Prefix.String() != "2001:db8:0:1::/64" {
			t.Fatalf("ban prefix %s", b.Prefix)
		}
	}
	if _, ok := tr.Banned(netip.MustParseAddr("2001:db8:0:1:abcd::9"), t0.Add(time.Minute)); !ok {
		t.Error("another address of the banned /64 is not banned")
	}
	if _, ok := tr.Banned(netip.MustParseAddr("2001:db8:0:2::1"), t0.Add(time.Minute)); ok {
		t.Error("the next /64 is banned too")
	}
}

func TestAllowNeverBanned(t *testing.T) {
	tr := newTracker()
	a := netip.MustParseAddr("192.0.2.99")
	for i := range 10 {
		if d, b := tr.Fail(a, WeightFailedLogin, "", t0.Add(time.Duration(i)*time.Second)); b != nil || d != 0 {
			t.Fatalf("allow-listed source: delay %v ban %v", d, b)
		}
	}
}

func TestOperatorBans(t *testing.T) {
	tr := newTracker()
	tr.Add(netip.MustParsePrefix("203.0.113.0/24"), time.Minute, "operator", t0)
	tr.Add(netip.MustParsePrefix("2001:db8:5::9/128"), time.Minute, "operator", t0)
	if _, ok := tr.Banned(netip.MustParseAddr("203.0.113.200"), t0); !ok {
		t.Error("address in a /24 ban not banned")
	}
	if _, ok := tr.Banned(netip.MustParseAddr("2001:db8:5::9"), t0); !ok {
		t.Error("/128 ban not in force")
	}
	if _, ok := tr.Banned(netip.MustParseAddr("2001:db8:5::a"), t0); ok {
		t.Error("/128 ban covers its neighbour")
	}
	if l := tr.List(t0); len(l) != 2 || l[0].Prefix.String() != "203.0.113.0/24" {
		t.Errorf("list %v", l)
	}
	if !tr.Remove(netip.MustParsePrefix("203.0.113.0/24")) || tr.Remove(netip.MustParsePrefix("203.0.113.0/24")) {
		t.Error("Remove reports wrongly")
	}
	if _, ok := tr.Banned(netip.MustParseAddr("203.0.113.200"), t0); ok {
		t.Error("removed ban still in force")
	}
	tr.Expire(t0.Add(time.Minute))
	if l := tr.List(t0); len(l) != 0 {
		t.Errorf("expired bans listed: %v", l)
	}
}

// A source inside an operator's wider ban is already banned: its failures
// are not counted into a second, narrower ban (logged and enforced again).
func TestFailUnderWideBan(t *testing.T) {
	tr := newTracker()
	tr.Add(netip.MustParsePrefix("203.0.113.0/24"), time.Hour, "operator", t0)
	a := netip.MustParseAddr("::ffff:203.0.113.9")
	for i := range 5 {
		if d, b := tr.Fail(a, WeightFailedLogin, "bad password", t0.Add(time.Duration(i)*time.Second)); d != 0 || b != nil {
			t.Fatalf("failure %d under a /24 ban: delay %v, ban %v", i+1, d, b)
		}
	}
	if l := tr.List(t0); len(l) != 1 || l[0].Reason != "operator" {
		t.Fatalf("bans %v, want only the operator's", l)
	}
}

func TestTarpitCapped(t *testing.T) {
	tr := New(Config{MaxFailures: 1000, Window: time.Hour, Duration: time.Hour, IPv6Prefix: 64})
	a := netip.MustParseAddr("198.51.100.7")
	var last time.Duration
	for i := range 100 {
		last, _ = tr.Fail(a, WeightFailedLogin, "", t0.Add(time.Duration(i)*time.Millisecond))
	}
	if last != tarpitMax {
		t.Errorf("delay after 100 failures %v, want the cap %v", last, tarpitMax)
	}
}

func TestGateOnePerSource(t *testing.T) {
	g := NewGate(2)
	a, b := netip.MustParsePrefix("198.51.100.1/32"), netip.MustParsePrefix("198.51.100.2/32")
	relA, err := g.Acquire(a, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// A second hash from a waits although a slot is free...
	if _, err := g.Acquire(a, 20*time.Millisecond); err != ErrGateTimeout {
		t.Fatalf("second slot for one source: %v, want a timeout", err)
	}
	// ... which b gets at once.
	relB, err := g.Acquire(b, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	relB()
	relA()
	relA() // idempotent
	if r, err := g.Acquire(a, time.Second); err != nil {
		t.Fatal(err)
	} else {
		r()
	}
	if g.free != 2 || len(g.active) != 0 || len(g.ring) != 0 || len(g.queues) != 0 {
		t.Errorf("gate not back to idle: free %d active %v ring %v queues %v", g.free, g.active, g.ring, g.queues)
	}
}

// With one slot, a source with many queued requests and a source with one
// take turns: the lone request is served after at most one of the others.
func TestGateRoundRobin(t *testing.T) {
	g := NewGate(1)
	attacker, user := netip.MustParsePrefix("198.51.100.1/32"), netip.MustParsePrefix("198.51.100.2/32")
	hold, err := g.Acquire(attacker, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	var queued atomic.Int32
	run := func(src netip.Prefix, name string) {
		defer wg.Done()
		queued.Add(1)
		rel, err := g.Acquire(src, 10*time.Second)
		if err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		order = append(order, name)
		mu.Unlock()
		rel()
	}
	for range 5 {
		wg.Add(1)
		go run(attacker, "a")
	}
	waitQueued := func(n int) {
		for i := 0; ; i++ {
			g.mu.Lock()
			q := len(g.queues[attacker]) + len(g.queues[user])
			g.mu.Unlock()
			if q == n {
				return
			}
			if i > 5000 {
				t.Fatalf("queue never reached %d", n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitQueued(5)
	wg.Add(1)
	go run(user, "u")
	waitQueued(6)
	hold()
	wg.Wait()
	if len(order) != 6 {
		t.Fatalf("order %v", order)
	}
	for i, n := range order {
		if n == "u" && i > 1 {
			t.Fatalf("the lone source was served %dth: %v", i+1, order)
		}
	}
}
