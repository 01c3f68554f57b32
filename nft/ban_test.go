package nft

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/ftpsd/ftpsd/internal/testns"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// A ban drops the source's new connections to ftpsd's ports, its pinholes
// included, and to nothing else; lifting it lets it in again.
func TestBanInKernel(t *testing.T) {
	ns := testns.New(t)
	ns.Run(t, "ip", "-6", "addr", "add", "fd00::1/128", "dev", "lo", "nodad")
	ns.Run(t, "ip", "-6", "addr", "add", "fd00:0:0:1::2/128", "dev", "lo", "nodad")
	ns.Run(t, "ip", "-6", "addr", "add", "fd00:0:0:1::3/128", "dev", "lo", "nodad")
	ns.Run(t, "ip", "-6", "addr", "add", "fd00:0:0:2::2/128", "dev", "lo", "nodad")
	fw := setup(t, ns, Config{PortMin: 50000, PortMax: 50999, ListenPorts: []uint16{2121}})
	for _, a := range []string{"[::]:2121", "[::]:50010", "[::]:8022"} {
		listen(t, ns, a)
	}
	for _, c := range []string{"127.0.0.2", "fd00:0:0:1::2"} {
		if err := fw.Open(Pinhole{Client: addr(c), Port: 50010}); err != nil {
			t.Fatal(err)
		}
	}
	if err := fw.Ban(pfx("127.0.0.2/32"), time.Hour, "5 failed logins"); err != nil {
		t.Fatal(err)
	}
	if err := fw.Ban(pfx("fd00:0:0:1::/64"), time.Hour, "5 failed logins"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ src, dst string }{
		{"127.0.0.2", "127.0.0.1:2121"}, {"127.0.0.2", "127.0.0.1:50010"},
		{"fd00:0:0:1::2", "[fd00::1]:2121"}, {"fd00:0:0:1::3", "[fd00::1]:2121"}, {"fd00:0:0:1::2", "[fd00::1]:50010"},
	} {
		mustBeDropped(t, ns, c.src, c.dst)
	}
	// Other sources, and other ports of the host, are untouched.
	mustConnect(t, ns, "127.0.0.3", "127.0.0.1:2121")
	mustConnect(t, ns, "fd00:0:0:2::2", "[fd00::1]:2121")
	mustConnect(t, ns, "127.0.0.2", "127.0.0.1:8022")
	mustConnect(t, ns, "fd00:0:0:1::2", "[fd00::1]:8022")

	bans, err := fw.Bans()
	if err != nil {
		t.Fatal(err)
	}
	if len(bans) != 2 || bans[0].Prefix != pfx("127.0.0.2/32") || bans[1].Prefix != pfx("fd00:0:0:1::/64") ||
		bans[0].Reason != "5 failed logins" || bans[0].Expires <= 59*time.Minute || bans[0].Expires > time.Hour {
		t.Fatalf("Bans = %+v", bans)
	}

	if err := fw.Unban(pfx("127.0.0.2/32")); err != nil {
		t.Fatal(err)
	}
	if err := fw.Unban(pfx("127.0.0.2/32")); err != nil {
		t.Fatalf("second Unban: %v", err)
	}
	mustConnect(t, ns, "127.0.0.2", "127.0.0.1:2121")
	mustConnect(t, ns, "127.0.0.2", "127.0.0.1:50010")
	if bans, _ := fw.Bans(); len(bans) != 1 {
		t.Fatalf("after Unban: %+v", bans)
	}
}

func TestBanTimes(t *testing.T) {
	ns := testns.New(t)
	fw := setup(t, ns, Config{PortMin: 50000, PortMax: 50999})
	listen(t, ns, "127.0.0.1:50011")
	if err := fw.Open(Pinhole{Client: addr("127.0.0.2"), Port: 50011, Label: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := fw.Ban(pfx("127.0.0.2/32"), time.Second, "short"); err != nil {
		t.Fatal(err)
	}
	mustBeDropped(t, ns, "127.0.0.2", "127.0.0.1:50011")
	time.Sleep(1500 * time.Millisecond)
	if bans, _ := fw.Bans(); len(bans) != 0 {
		t.Fatalf("ban outlived its time: %+v", bans)
	}
	mustConnect(t, ns, "127.0.0.2", "127.0.0.1:50011")

	// Banning again restarts the time.
	if err := fw.Ban(pfx("192.0.2.0/24"), 10*time.Second, "a"); err != nil {
		t.Fatal(err)
	}
	if err := fw.Ban(pfx("192.0.2.0/24"), time.Hour, "b"); err != nil {
		t.Fatal(err)
	}
	if bans, _ := fw.Bans(); len(bans) != 1 || bans[0].Expires < 59*time.Minute || bans[0].Reason != "b" {
		t.Fatalf("re-ban: %+v", bans)
	}
	if err := fw.Ban(pfx("192.0.2.7/32"), time.Hour, "inside"); !errors.Is(err, ErrBanOverlap) {
		t.Fatalf("ban inside a banned prefix = %v; want ErrBanOverlap", err)
	}
	for _, bad := range []string{"0.0.0.0/0", "255.255.255.255/32", "::/0", "::ffff:0.0.0.0/80"} {
		if err := fw.Ban(pfx(bad), time.Hour, ""); err == nil {
			t.Errorf("Ban(%s) succeeded", bad)
		}
	}
	// IPv4-mapped is IPv4.
	if err := fw.Ban(pfx("::ffff:198.51.100.0/120"), time.Hour, "mapped"); err != nil {
		t.Fatal(err)
	}
	if bans, _ := fw.Bans(); len(bans) != 2 || bans[1].Prefix != pfx("198.51.100.0/24") {
		t.Fatalf("mapped ban: %+v", bans)
	}
}

// A restore puts back ftpsd's own bans and those another process (the
// `ftpsd ban` command) added.
func TestRestoreKeepsBans(t *testing.T) {
	ns := testns.New(t)
	fw := setup(t, ns, Config{PortMin: 50000, PortMax: 50999, CheckInterval: 100 * time.Millisecond})
	if err := fw.Ban(pfx("192.0.2.1/32"), time.Hour, "own"); err != nil {
		t.Fatal(err)
	}
	cli, err := Attach(Config{NetNSFd: ns.FD()})
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.Ban(pfx("2001:db8::/48"), time.Hour, "by hand"); err != nil {
		t.Fatal(err)
	}
	if err := cli.Ban(pfx("198.51.100.0/24"), time.Hour, "lifted by hand"); err != nil {
		t.Fatal(err)
	}
	cli.Release()
	time.Sleep(300 * time.Millisecond) // a periodic check learns of them
	cli, err = Attach(Config{NetNSFd: ns.FD()})
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.Unban(pfx("198.51.100.0/24")); err != nil {
		t.Fatal(err)
	}
	cli.Release()
	// Lifted more than a check before the flush: it must stay lifted.
	time.Sleep(5300 * time.Millisecond)
	ns.Run(t, "nft", "flush", "ruleset")
	r := waitRestores(t, fw, 1, 5*time.Second)
	if r.Last.Bans != 2 {
		t.Fatalf("restore put back %d bans, want 2", r.Last.Bans)
	}
	bans, err := fw.Bans()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range bans {
		got = append(got, b.Prefix.String()+" "+b.Reason)
		if b.Expires < 58*time.Minute {
			t.Errorf("ban %v came back with %v left", b.Prefix, b.Expires)
		}
	}
	if strings.Join(got, ", ") != "192.0.2.1/32 own, 2001:db8::/48 by hand" {
		t.Fatalf("bans after restore: %v", got)
	}
}

func TestDecodeIntervals(t *testing.T) {
	el := func(a string, end bool, c string) nftables.SetElement {
		return nftables.SetElement{Key: netip.MustParseAddr(a).AsSlice(), IntervalEnd: end, Comment: c}
	}
	got, err := decodeIntervals([]nftables.SetElement{
		// Kernel dumps come in descending order.
		el("10.0.1.0", true, ""), el("10.0.0.0", false, "range"),
		el("192.0.2.8", true, ""), el("192.0.2.7", false, "one"),
		el("198.51.100.0", false, "to the top"),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/24 range", "192.0.2.7/32 one", "198.51.100.0/22 to the top"}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if s := got[i].Prefix.String() + " " + got[i].Reason; s != want[i] {
			t.Errorf("got %q, want %q", s, want[i])
		}
	}
}

// Banned answers for ftpsd's own bans at once and learns an operator's
// (`ftpsd ban add`, another process) from the periodic check: the server
// asks it for clients whose address only a PROXY header names.
func TestBannedAddress(t *testing.T) {
	ns := testns.New(t)
	fw := setup(t, ns, Config{PortMin: 50000, PortMax: 50999, CheckInterval: 100 * time.Millisecond})
	if err := fw.Ban(pfx("192.0.2.0/24"), time.Hour, "own"); err != nil {
		t.Fatal(err)
	}
	for a, want := range map[string]bool{"192.0.2.9": true, "::ffff:192.0.2.10": true, "192.0.3.1": false, "2001:db8::5": false} {
		if got := fw.Banned(addr(a)); got != want {
			t.Errorf("Banned(%s) = %v, want %v", a, got, want)
		}
	}
	cli, err := Attach(Config{NetNSFd: ns.FD()})
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.Ban(pfx("2001:db8::/48"), time.Hour, "by hand"); err != nil {
		t.Fatal(err)
	}
	cli.Release()
	deadline := time.Now().Add(20 * time.Second)
	for !fw.Banned(addr("2001:db8:0:7::5")) {
		if time.Now().After(deadline) {
			t.Fatal("an operator's ban never reached Banned")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if fw.Banned(addr("2001:db9::5")) {
		t.Error("address outside the operator's ban reported banned")
	}
}
