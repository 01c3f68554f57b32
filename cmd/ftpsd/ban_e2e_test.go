package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// `ftpsd ban` acts on the running table: a banned source's SYNs to the
// control port are dropped in the kernel while others still get in; bans
// outlive a restart and a flush of the ruleset, and can be lifted.
func TestBanCommand(t *testing.T) {
	ns := newNS(t)
	const attacker6 = "fd00:0:0:b::3" // a /64 of its own
	ns.Run(t, "ip", "-6", "addr", "add", attacker6+"/128", "dev", "lo", "nodad")
	s := startFTPSD(t, ns, serverOpts{})
	want := randomFile(t, filepath.Join(s.root("alice"), "f.bin"), 64<<10)
	ban := func(args ...string) (string, error) {
		return s.run(10*time.Second, ftpsdBin, append(append([]string{"ban"}, args...), "-c", s.cfgPath)...)
	}
	mustBan := func(args ...string) string {
		t.Helper()
		out, err := ban(args...)
		if err != nil {
			t.Fatalf("ftpsd ban %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	ctl4 := net.JoinHostPort(srvIP4, fmt.Sprint(ctlPort))
	ctl6 := net.JoinHostPort(srvIP6, fmt.Sprint(ctlPort))
	imp4 := net.JoinHostPort(srvIP4, fmt.Sprint(impPort))

	if out := mustBan("add", cliB4, "2h"); !strings.Contains(out, "banned 127.0.0.3/32 for 2h0m0s") {
		t.Fatalf("ban add said %q", out)
	}
	if out := mustBan("add", attacker6); !strings.Contains(out, "banned fd00:0:0:b::/64 for 1h0m0s") {
		t.Fatalf("ban add of an IPv6 address said %q", out)
	}
	check := func(when string) {
		t.Helper()
		s.mustBeDropped(cliB4, ctl4, "banned IPv4 source, control port "+when)
		s.mustBeDropped(cliB4, imp4, "banned IPv4 source, implicit port "+when)
		s.mustBeDropped(attacker6, ctl6, "banned IPv6 /64, control port "+when)
		// Everyone else is served, by a real client.
		s.mustRun(60*time.Second, "curl", curlArgs(s, "alice", "--interface", cliA4, "-o", "got.bin", fmt.Sprintf("ftp://%s:%d/f.bin", srvIP4, ctlPort))...)
		if got, _ := os.ReadFile(filepath.Join(s.dir, "got.bin")); !bytes.Equal(got, want) {
			t.Fatalf("download by a client that is not banned (%s) differs", when)
		}
		c := s.client(cliA6, srvIP6, "alice")
		c.Quit()
	}
	check("after ban add")
	list := mustBan("list")
	for _, w := range []string{"banned: 2", "127.0.0.3/32", "fd00:0:0:b::/64", "ftpsd ban add"} {
		if !strings.Contains(list, w) {
			t.Fatalf("ban list lacks %q:\n%s", w, list)
		}
	}

	// Across a restart of ftpsd.
	s.stop()
	s.start()
	check("after a restart")

	// Across a flush of the whole ruleset: the server has learnt the bans
	// the command added (it checks every 2 s) and restores them.
	time.Sleep(2500 * time.Millisecond)
	ns.Run(t, "nft", "flush", "ruleset")
	waitFor(t, 10*time.Second, "the table to come back", func() bool { return s.restores() == 1 })
	check("after flush ruleset")

	if out := mustBan("remove", cliB4); !strings.Contains(out, "ban on 127.0.0.3/32 lifted") {
		t.Fatalf("ban remove said %q", out)
	}
	c, err := s.dial(cliB4, 2*time.Second)("tcp", ctl4)
	if err != nil {
		t.Fatalf("lifted ban: %v", err)
	}
	c.Close()
	if out, err := ban("remove", cliB4); err == nil || !strings.Contains(out, "is not banned") {
		t.Fatalf("removing a ban that is not there: %v\n%s", err, out)
	}
	if out, err := ban("add", "not-an-address"); err == nil || !strings.Contains(out, "is not an address") {
		t.Fatalf("ban add of garbage: %v\n%s", err, out)
	}
	if out := mustBan("-h"); !strings.Contains(out, "ftpsd ban add ADDR[/LEN]") {
		t.Fatalf("ban -h said %q", out)
	}
}

// Failed logins ban the source in the kernel: its SYNs to the control ports
// and the passive range are dropped (not refused at accept), another address
// still logs in and transfers, and `ftpsd ban list` shows why.
func TestAutomaticBanAtSYNLevel(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{extra: banSection(2)})
	addPrefixB6(t, s)
	for range 2 {
		s.failLogin(cliB4, srvIP4)
	}
	s.waitLog("msg=ban", 10*time.Second)
	for range 2 {
		s.failLogin(prefixB6[0], srvIP6)
	}
	waitFor(t, 10*time.Second, "the IPv6 /64 to be banned", func() bool {
		return countLines(s.log.String(), "msg=ban") >= 2
	})
	s.mustBeDropped(cliB4, net.JoinHostPort(srvIP4, fmt.Sprint(ctlPort)), "auto-banned IPv4 source, control port")
	s.mustBeDropped(cliB4, net.JoinHostPort(srvIP4, "50010"), "auto-banned IPv4 source, passive range")
	// Another address of the same /64 is banned with it.
	s.mustBeDropped(prefixB6[1], net.JoinHostPort(srvIP6, fmt.Sprint(ctlPort)), "auto-banned IPv6 /64")
	c := s.client(cliA4, srvIP4, "alice")
	if _, err := c.Retr("LIST"); err != nil {
		t.Fatalf("legitimate client during the ban: %v", err)
	}
	list := s.mustRun(10*time.Second, ftpsdBin, "ban", "list", "-c", s.cfgPath)
	if !strings.Contains(list, "127.0.0.3/32") || !strings.Contains(list, "failed login") || !strings.Contains(list, "/64") {
		t.Fatalf("ban list after automatic bans:\n%s", list)
	}
}
