package main

// The firewall guarantee on a real host: other tools reload or delete the
// ruleset, admins start a second copy, a start fails half-way. These tests
// do each of those to a running ftpsd in its own namespace.

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/internal/ftpclient"
	"github.com/ftpsd/ftpsd/internal/testns"
)

// hostRuleset is a Debian-style /etc/nftables.conf: it starts with
// `flush ruleset`, as `systemctl restart nftables` loads it. rangeRule is
// the host's rule for the passive range.
func hostRuleset(rangeRule string) string {
	return fmt.Sprintf(`flush ruleset
table inet host {
	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		tcp dport { 2121, 990 } accept
		%s
	}
}
`, rangeRule)
}

const (
	// oldRecipe opens the range and relies on ftpsd's guard to narrow it.
	oldRecipe = "tcp dport 50000-50099 accept"
	// markRecipe admits only what ftpsd's guard marked.
	markRecipe = "tcp dport 50000-50099 meta mark & 0x00ff0000 == 0x00f70000 accept"
	testMark   = "0x00f70000/0x00ff0000"
)

// loadHost loads a host ruleset file the way the nftables service does.
func loadHost(t *testing.T, ns *testns.NS, dir, ruleset string) string {
	t.Helper()
	path := filepath.Join(dir, "nftables.conf")
	if err := os.WriteFile(path, []byte(ruleset), 0o644); err != nil {
		t.Fatal(err)
	}
	ns.Run(t, "nft", "-f", path)
	return path
}

var restoresRE = regexp.MustCompile(`restores: (\d+)`)

// restores reads the owner's restore count from `ftpsd firewall status`.
func (s *ftpsd) restores() int {
	s.t.Helper()
	out, err := s.run(10*time.Second, ftpsdBin, "firewall", "status", "-c", s.cfgPath)
	if err != nil {
		return -1 // table missing right now
	}
	m := restoresRE.FindStringSubmatch(out)
	if m == nil {
		s.t.Fatalf("status shows no restore count:\n%s", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// waitRestored waits until the owner has restored its table n times in all
// and the pinhole (client, port) is in the kernel again.
func (s *ftpsd) waitRestored(n int, client string, port int) {
	s.t.Helper()
	elem := fmt.Sprintf("%s . %d", client, port)
	waitFor(s.t, 10*time.Second, fmt.Sprintf("restore %d with pinhole %s", n, elem), func() bool {
		if s.restores() < n {
			return false
		}
		set := "pinholes4"
		if strings.Contains(client, ":") {
			set = "pinholes6"
		}
		out, err := s.ns.Command("nft", "list", "set", "inet", "ftpsd", set).CombinedOutput()
		return err == nil && strings.Contains(string(out), elem)
	})
}

// finishRetr completes a download on a data port held since before the
// disruption, checking every byte.
func finishRetr(t *testing.T, c *ftpclient.Client, port int, name string, want []byte) {
	t.Helper()
	data, err := c.DialData(port)
	if err != nil {
		t.Fatalf("data connection to the port held across the disruption: %v", err)
	}
	if _, err := c.Expect(150, "RETR %s", name); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(data)
	data.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("transfer across the disruption: %d bytes, %v; want %d bytes equal", len(got), err, len(want))
	}
	if rep, err := c.Read(); err != nil || rep.Code != 226 {
		t.Fatalf("after transfer: %v %v", rep, err)
	}
}

// The table comes back, with the pinholes of replies clients still hold,
// whatever removed it; the client never notices and strangers stay out.
func TestSelfHealingTable(t *testing.T) {
	for _, tc := range []struct {
		name    string
		recipe  string
		mark    string
		disrupt func(t *testing.T, ns *testns.NS, hostConf string)
		times   int
	}{
		{"reload with flush ruleset", oldRecipe, "", func(t *testing.T, ns *testns.NS, conf string) {
			ns.Run(t, "nft", "-f", conf)
		}, 1},
		{"reload with flush ruleset, fail-closed recipe", markRecipe, testMark, func(t *testing.T, ns *testns.NS, conf string) {
			ns.Run(t, "nft", "-f", conf)
		}, 1},
		{"delete table", oldRecipe, "", func(t *testing.T, ns *testns.NS, _ string) {
			ns.Run(t, "nft", "delete", "table", "inet", "ftpsd")
		}, 1},
		{"twenty reloads in a row", oldRecipe, "", func(t *testing.T, ns *testns.NS, conf string) {
			for range 20 {
				ns.Run(t, "nft", "-f", conf)
			}
		}, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNS(t)
			hostConf := loadHost(t, ns, t.TempDir(), hostRuleset(tc.recipe))
			s := startFTPSD(t, ns, serverOpts{dataTimeout: "30s", pinholeTimeout: "30s", mark: tc.mark})
			want := randomFile(t, filepath.Join(s.root("alice"), "f.bin"), 1<<20)
			c := s.client(cliA4, srvIP4, "alice")
			port, err := c.EPSV()
			if err != nil {
				t.Fatal(err)
			}
			c6 := s.client(cliA6, srvIP6, "alice")
			port6, err := c6.EPSV()
			if err != nil {
				t.Fatal(err)
			}

			tc.disrupt(t, ns, hostConf)
			s.waitRestored(1, cliA4, port)
			s.waitRestored(1, cliA6, port6)
			time.Sleep(200 * time.Millisecond) // let the last of a burst settle
			n := s.restores()
			if n < 1 || n > tc.times {
				t.Fatalf("%d restores for %d disruptions", n, tc.times)
			}
			if logged := countLines(s.log.String(), "level=WARN", "restored it"); logged != n {
				t.Fatalf("%d restores logged, status says %d: each restore is one WARN line", logged, n)
			}

			// Strangers stay out of the held ports and the rest of the range.
			s.mustBeDropped(cliB4, net.JoinHostPort(srvIP4, strconv.Itoa(port)), "second address after the restore")
			s.mustBeDropped(cliB6, net.JoinHostPort(srvIP6, strconv.Itoa(port6)), "second address after the restore (IPv6)")
			// The held replies still work, over both families.
			finishRetr(t, c, port, "f.bin", want)
			finishRetr(t, c6, port6, "f.bin", want)

			// New transfers from real clients work as before.
			s.mustRun(60*time.Second, "curl", curlArgs(s, "alice", "-o", "got.bin", fmt.Sprintf("ftp://%s:%d/f.bin", srvIP4, ctlPort))...)
			if got, _ := os.ReadFile(filepath.Join(s.dir, "got.bin")); !bytes.Equal(got, want) {
				t.Fatal("curl download after the restore differs")
			}
			s.mustRun(60*time.Second, "lftp", "-c", fmt.Sprintf(
				"set ftp:ssl-force true; set ssl:verify-certificate false; set net:max-retries 1; set net:timeout 10; "+
					"open -u alice,%s ftp://[%s]:%d; get f.bin -o lftp.bin", testUsers["alice"], srvIP6, ctlPort))
			if got, _ := os.ReadFile(filepath.Join(s.dir, "lftp.bin")); !bytes.Equal(got, want) {
				t.Fatal("lftp download after the restore differs")
			}
			// The host's own table is as the admin loaded it.
			if host := ns.Run(t, "nft", "list", "table", "inet", "host"); !strings.Contains(host, "policy drop") {
				t.Fatalf("host table changed:\n%s", host)
			}
		})
	}
}

// Behind a default-drop host ruleset ftpsd narrows the passive range to
// its pinholes, with either recipe. With the fail-closed one nothing enters the passive range while
// ftpsd's table is absent; with the old recipe everything does (which is
// why the mark recipe is the recommended one).
func TestFailClosedRecipe(t *testing.T) {
	for _, tc := range []struct {
		name, recipe, mark string
		closed             bool
	}{
		{"mark recipe", markRecipe, testMark, true},
		{"old recipe", oldRecipe, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNS(t)
			loadHost(t, ns, t.TempDir(), hostRuleset(tc.recipe))
			s := startFTPSD(t, ns, serverOpts{mark: tc.mark})
			want := randomFile(t, filepath.Join(s.root("alice"), "f.bin"), 256<<10)
			s.mustRun(60*time.Second, "curl", curlArgs(s, "alice", "-o", "got.bin", fmt.Sprintf("ftp://%s:%d/f.bin", srvIP4, ctlPort))...)
			if got, _ := os.ReadFile(filepath.Join(s.dir, "got.bin")); !bytes.Equal(got, want) {
				t.Fatal("curl download through the host ruleset differs")
			}
			c := s.client(cliA4, srvIP4, "alice")
			port, err := c.EPSV()
			if err != nil {
				t.Fatal(err)
			}
			s.mustBeDropped(cliB4, net.JoinHostPort(srvIP4, strconv.Itoa(port)), "second address")
			finishRetr(t, c, port, "f.bin", want)
			if host := ns.Run(t, "nft", "list", "table", "inet", "host"); !strings.Contains(host, "tcp dport 50000-50099") {
				t.Fatalf("ftpsd changed the host table:\n%s", host)
			}

			s.stop()
			ns.Run(t, "nft", "delete", "table", "inet", "ftpsd")
			ns.Listen(t, "[::]:50050")
			for _, dst := range []string{net.JoinHostPort(srvIP4, "50050"), net.JoinHostPort(srvIP6, "50050")} {
				src := cliA4
				if strings.Contains(dst, "[") {
					src = cliA6
				}
				if tc.closed {
					s.mustBeDropped(src, dst, "passive range with ftpsd and its table gone")
					continue
				}
				conn, err := s.dial(src, time.Second)("tcp", dst)
				if err != nil {
					t.Fatalf("old recipe without ftpsd's table: %v; expected the range to be open (the test would prove nothing)", err)
				}
				conn.Close()
			}
		})
	}
}

// A second ftpsd for the same table, with the same config or another one,
// refuses to start, names the owner, and changes nothing.
func TestSecondInstanceRefused(t *testing.T) {
	ns := newNS(t)
	s := startFTPSD(t, ns, serverOpts{dataTimeout: "30s", pinholeTimeout: "30s"})
	want := randomFile(t, filepath.Join(s.root("alice"), "f.bin"), 256<<10)
	c := s.client(cliA4, srvIP4, "alice")
	port, err := c.EPSV()
	if err != nil {
		t.Fatal(err)
	}
	chainBefore := ns.Run(t, "nft", "-a", "list", "chain", "inet", "ftpsd", "guard")
	elem := fmt.Sprintf("%s . %d", cliA4, port)

	otherDir := t.TempDir()
	other := writeConfig(t, otherDir, serverOpts{})
	cfgText, _ := os.ReadFile(other)
	cfgText = bytes.ReplaceAll(cfgText, []byte(fmt.Sprintf(":%d\"", ctlPort)), []byte(":2122\""))
	cfgText = bytes.ReplaceAll(cfgText, []byte(fmt.Sprintf(":%d\"", impPort)), []byte(":991\""))
	if err := os.WriteFile(other, cfgText, 0o600); err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(s.cmd.Process.Pid)
	for _, cfg := range []string{s.cfgPath, other} {
		out, err := s.run(15*time.Second, ftpsdBin, "serve", "-c", cfg)
		if err == nil || strings.Contains(err.Error(), "timed out") {
			t.Fatalf("second ftpsd with %s: %v; want it to refuse at once\n%s", cfg, err, out)
		}
		if !strings.Contains(out, "table inet ftpsd is managed by") || !strings.Contains(out, "pid "+pid) {
			t.Fatalf("second ftpsd with %s does not name the owner (pid %s):\n%s", cfg, pid, out)
		}
		if strings.Contains(out, "firewall ready") || strings.Contains(out, "listening") {
			t.Fatalf("second ftpsd got as far as the firewall or the listeners:\n%s", out)
		}
	}
	if out := ns.Run(t, "ss", "-Htln", "sport = :2122 or sport = :991"); strings.TrimSpace(out) != "" {
		t.Fatalf("the refused server left a listener:\n%s", out)
	}
	if after := ns.Run(t, "nft", "-a", "list", "chain", "inet", "ftpsd", "guard"); after != chainBefore {
		t.Fatalf("the guard chain was re-created:\nbefore\n%s\nafter\n%s", chainBefore, after)
	}
	if set := ns.Run(t, "nft", "list", "set", "inet", "ftpsd", "pinholes4"); !strings.Contains(set, elem) {
		t.Fatalf("the running server's pinhole %s is gone:\n%s", elem, set)
	}
	finishRetr(t, c, port, "f.bin", want)
	if n := s.restores(); n != 0 {
		t.Fatalf("%d restores: the refused servers touched the table", n)
	}

	// Once the owner stops, the table is free for the next one.
	s.stop()
	s2 := &ftpsd{t: t, ns: ns, dir: otherDir, cfgPath: other, ctl: 2122}
	s2.start()
}

// A start that fails leaves the ruleset exactly as it was.
func TestFailedStartLeavesRuleset(t *testing.T) {
	ns := newNS(t)
	loadHost(t, ns, t.TempDir(), hostRuleset(oldRecipe))
	before := ns.Run(t, "nft", "-a", "list", "ruleset")
	ns.Listen(t, fmt.Sprintf("[::]:%d", impPort))
	dir := t.TempDir()
	cfg := writeConfig(t, dir, serverOpts{})
	out, err := (&ftpsd{t: t, ns: ns, dir: dir}).run(15*time.Second, ftpsdBin, "serve", "-c", cfg)
	if err == nil || !strings.Contains(out, "address already in use") {
		t.Fatalf("serve with its implicit port taken: %v\n%s", err, out)
	}
	if after := ns.Run(t, "nft", "-a", "list", "ruleset"); after != before {
		t.Fatalf("a failed start changed the ruleset:\nbefore\n%s\nafter\n%s", before, after)
	}
	if out := ns.Run(t, "ss", "-Htln", fmt.Sprintf("sport = :%d", ctlPort)); strings.TrimSpace(out) != "" {
		t.Fatalf("the failed start left a listener:\n%s", out)
	}
}

// `firewall reset` will not pull the table from under a running server
// unless forced (and then the server puts it back); with no server it
// removes the table, and says so when there is none.
func TestFirewallResetOwned(t *testing.T) {
	ns := newNS(t)
	s := startFTPSD(t, ns, serverOpts{})
	pid := strconv.Itoa(s.cmd.Process.Pid)
	st := s.status()
	if !strings.Contains(st, "owner: ftpsd pid "+pid) || !strings.Contains(st, "restores: 0") {
		t.Fatalf("status does not show the owner and its restores:\n%s", st)
	}
	out, err := s.run(10*time.Second, ftpsdBin, "firewall", "reset", "-c", s.cfgPath)
	if err == nil || !strings.Contains(out, "owned by a running ftpsd (pid "+pid+")") || !strings.Contains(out, "--force") {
		t.Fatalf("reset of an owned table: %v\n%s", err, out)
	}
	ns.Run(t, "nft", "list", "table", "inet", "ftpsd")
	out = s.mustRun(10*time.Second, ftpsdBin, "firewall", "reset", "--force", "-c", s.cfgPath)
	if !strings.Contains(out, "deleting it anyway") || !strings.Contains(out, "removed") {
		t.Fatalf("reset --force said:\n%s", out)
	}
	waitFor(t, 10*time.Second, "the owner to restore its table", func() bool { return s.restores() == 1 })
	if st := s.status(); !strings.Contains(st, "restores: 1, last at") || !strings.Contains(st, "missing: table") {
		t.Fatalf("status after the restore:\n%s", st)
	}
	s.stop()
	if st := s.status(); !strings.Contains(st, "owner: none") {
		t.Fatalf("status with no server:\n%s", st)
	}
	if out := s.mustRun(10*time.Second, ftpsdBin, "firewall", "reset", "-c", s.cfgPath); !strings.Contains(out, "table inet ftpsd removed") {
		t.Fatalf("reset with no owner said:\n%s", out)
	}
	if out := s.mustRun(10*time.Second, ftpsdBin, "firewall", "reset", "-c", s.cfgPath); !strings.Contains(out, "does not exist; nothing to remove") {
		t.Fatalf("reset with no table said:\n%s", out)
	}
}
