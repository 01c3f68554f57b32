package nft

import (
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/internal/testns"
)

// waitRestores waits until fw has restored its table n times in all.
func waitRestores(t *testing.T, fw *NFTables, n int, within time.Duration) Restores {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		r := fw.Restores()
		if r.Count >= n {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %d restores, want %d", within, r.Count, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// verifyNow checks fw's table on a connection of the test's own (the
// watcher's is not for concurrent use).
func verifyNow(t *testing.T, fw *NFTables) string {
	t.Helper()
	conn, err := dial(fw.cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	missing, err := fw.verify(conn)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return missing
}

func TestVerifyFreshTable(t *testing.T) {
	ns := testns.New(t)
	for _, cfg := range []Config{
		{PortMin: 50000, PortMax: 50999},
		{PortMin: 40000, PortMax: 40000, Mark: 0x00f7_0000, MarkMask: 0x00ff_0000},
	} {
		fw := setup(t, ns, cfg)
		if missing := verifyNow(t, fw); missing != "" {
			t.Fatalf("fresh table %+v: verify = %q; want intact", cfg, missing)
		}
		fw.Release()
	}
}

// Each way the table gets damaged is noticed and repaired, with the live
// pinholes (and only those) back, holding no more time than they had.
func TestRestore(t *testing.T) {
	for _, tc := range []struct {
		name, nft, missing string
	}{
		{"delete table", "delete table inet ftpsd", "table"},
		{"flush ruleset", "flush ruleset", "table"},
		{"flush chain", "flush chain inet ftpsd guard", "rules of chain guard"},
		{"accept rule inserted", "insert rule inet ftpsd guard tcp dport 50000-50999 accept", "rules of chain guard"},
		{"set deleted", "flush chain inet ftpsd guard; delete set inet ftpsd pinholes4", "rules of chain guard, set pinholes4"},
		{"foreign chain", "add chain inet ftpsd sneaky { type filter hook input priority -20; policy accept; }", "foreign chain sneaky"},
		{"policy changed", "add chain inet ftpsd guard { type filter hook input priority -10; policy drop; }", "chain guard (type, hook, priority or policy)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := testns.New(t)
			fw := setup(t, ns, Config{PortMin: 50000, PortMax: 50999, Timeout: 20 * time.Second})
			for _, p := range []Pinhole{
				{Client: addr("192.0.2.1"), Port: 50001, Label: "user=a"},
				{Client: addr("2001:db8::1"), Port: 50002, Label: "user=b"},
				{Client: addr("192.0.2.3"), Port: 50003},
			} {
				if err := fw.Open(p); err != nil {
					t.Fatal(err)
				}
			}
			if err := fw.Close(addr("192.0.2.3"), 50003); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			ns.Run(t, "nft", tc.nft)
			r := waitRestores(t, fw, 1, 5*time.Second)
			if r.Last.Missing != tc.missing || r.Last.Pinholes != 2 {
				t.Fatalf("restore = %+v; want missing %q and 2 pinholes", r.Last, tc.missing)
			}
			if missing := verifyNow(t, fw); missing != "" {
				t.Fatalf("after restore: verify = %q", missing)
			}
			got := mustList(t, fw)
			if len(got) != 2 || got[0].Port != 50001 || got[0].Label != "user=a" || got[1].Port != 50002 {
				t.Fatalf("pinholes after restore = %+v", got)
			}
			for _, p := range got {
				if p.Expires > 20*time.Second-100*time.Millisecond {
					t.Errorf("pinhole %v:%d got its time back (%v left)", p.Client, p.Port, p.Expires)
				}
			}
			// The restore is exactly one: the watcher does not react to its own work.
			time.Sleep(300 * time.Millisecond)
			if n := fw.Restores().Count; n != 1 {
				t.Fatalf("%d restores, want 1", n)
			}
		})
	}
}

// The restored guard works in the kernel: pinholed client in, anyone else out.
func TestRestoredGuardWorks(t *testing.T) {
	ns := testns.New(t)
	fw := setup(t, ns, Config{PortMin: 50000, PortMax: 50999})
	listen(t, ns, "127.0.0.1:50010")
	if err := fw.Open(Pinhole{Client: addr("127.0.0.2"), Port: 50010}); err != nil {
		t.Fatal(err)
	}
	ns.Run(t, "nft", "flush ruleset")
	waitRestores(t, fw, 1, 5*time.Second)
	mustBeDropped(t, ns, "127.0.0.3", "127.0.0.1:50010")
	mustConnect(t, ns, "127.0.0.2", "127.0.0.1:50010")
}

// An Open that finds the table gone repairs it itself rather than fail,
// whether or not the watcher got there first.
func TestOpenRightAfterDelete(t *testing.T) {
	ns := testns.New(t)
	fw := setup(t, ns, Config{PortMin: 50000, PortMax: 50999})
	for i := range 20 {
		ns.Run(t, "nft", "delete table inet ftpsd")
		if err := fw.Open(Pinhole{Client: addr("192.0.2.1"), Port: uint16(50000 + i)}); err != nil {
			t.Fatalf("Open %d right after the table was deleted: %v", i, err)
		}
	}
	if n := len(mustList(t, fw)); n != 20 {
		t.Fatalf("%d pinholes, want 20", n)
	}
}

// Without events (lost, or a kernel that sends none) the periodic check
// still finds and repairs the damage.
func TestPeriodicCheck(t *testing.T) {
	ns := testns.New(t)
	fw := setup(t, ns, Config{PortMin: 50000, PortMax: 50999, CheckInterval: 300 * time.Millisecond, noEvents: true})
	ns.Run(t, "nft", "delete table inet ftpsd")
	waitRestores(t, fw, 1, 3*time.Second)
	if !strings.Contains(ns.Run(t, "nft", "list", "tables"), "inet ftpsd") {
		t.Fatal("table not back")
	}
}

// Once released, nothing is restored: the owner has gone, and a later
// owner's Setup makes its own table.
func TestNoRestoreAfterRelease(t *testing.T) {
	ns := testns.New(t)
	fw := setup(t, ns, Config{PortMin: 50000, PortMax: 50999, CheckInterval: 100 * time.Millisecond})
	fw.Release()
	ns.Run(t, "nft", "delete table inet ftpsd")
	time.Sleep(400 * time.Millisecond)
	if strings.Contains(ns.Run(t, "nft", "list", "tables"), "ftpsd") {
		t.Fatal("a released firewall restored its table")
	}
}

// With a mark, the host ruleset can accept exactly what the guard admitted,
// and nothing at all while the guard is absent.
func TestMarkFailsClosed(t *testing.T) {
	ns := testns.New(t)
	ns.Run(t, "nft", `table inet host {
	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		iif lo ip daddr 127.0.0.1 tcp dport != 50000-50999 accept
		tcp dport 50000-50999 meta mark & 0x00ff0000 == 0x00f70000 accept
	}
}`)
	listen(t, ns, "127.0.0.1:50020")
	fw := setup(t, ns, Config{PortMin: 50000, PortMax: 50999, Mark: 0x00f7_0000, MarkMask: 0x00ff_0000})
	if err := fw.Open(Pinhole{Client: addr("127.0.0.2"), Port: 50020}); err != nil {
		t.Fatal(err)
	}
	mustBeDropped(t, ns, "127.0.0.3", "127.0.0.1:50020")
	mustConnect(t, ns, "127.0.0.2", "127.0.0.1:50020")
	fw.Release()
	ns.Run(t, "nft", "delete table inet ftpsd")
	for _, src := range []string{"127.0.0.2", "127.0.0.3"} {
		mustBeDropped(t, ns, src, "127.0.0.1:50020")
	}
	if out := ns.Run(t, "nft", "list", "ruleset"); !strings.Contains(out, "table inet host") || strings.Contains(out, "ftpsd") {
		t.Fatalf("unexpected ruleset:\n%s", out)
	}
}
