package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/internal/ftpclient"
)

// attackTimeout is how long a dropped SYN is given to (not) be answered.
const attackTimeout = 700 * time.Millisecond

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// mustBeDropped dials addr from src and requires the kernel to drop the SYN
// silently (a timeout, not a refusal and not a connection).
func (s *ftpsd) mustBeDropped(src, addr, why string) {
	s.t.Helper()
	c, err := s.dial(src, attackTimeout)("tcp", addr)
	if err == nil {
		c.Close()
		s.t.Fatalf("%s: connection from %s to %s was admitted", why, src, addr)
	}
	if !isTimeout(err) {
		s.t.Fatalf("%s: connection from %s to %s failed with %v, want a timeout (dropped SYN)", why, src, addr, err)
	}
}

var droppedRE = regexp.MustCompile(`dropped: (\d+) packets`)

func (s *ftpsd) dropped() int {
	s.t.Helper()
	st := s.status()
	m := droppedRE.FindStringSubmatch(st)
	if m == nil {
		s.t.Fatalf("status has no drop counter:\n%s", st)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func TestPinholeOnlyForTheClientAndOnlyOnce(t *testing.T) {
	for _, fam := range []struct{ name, srv, a, b string }{
		{"ipv4", srvIP4, cliA4, cliB4},
		{"ipv6", srvIP6, cliA6, cliB6},
	} {
		t.Run(fam.name, func(t *testing.T) {
			s := startFTPSD(t, newNS(t), serverOpts{dataTimeout: "20s", pinholeTimeout: "20s"})
			want := randomFile(t, filepath.Join(s.root("alice"), "f.bin"), 8<<20)
			c := s.client(fam.a, fam.srv, "alice")
			port, err := c.EPSV()
			if err != nil {
				t.Fatal(err)
			}
			addr := net.JoinHostPort(fam.srv, strconv.Itoa(port))
			st := s.status()
			if !strings.Contains(st, fam.a) || !strings.Contains(st, strconv.Itoa(port)) || !strings.Contains(st, "user=alice") {
				t.Fatalf("status does not show the pinhole %s:%d for alice:\n%s", fam.a, port, st)
			}

			// 1. Another source address is dropped by the kernel while A's reply is pending.
			before := s.dropped()
			s.mustBeDropped(fam.b, addr, "second address")
			if after := s.dropped(); after <= before {
				t.Fatalf("drop counter did not rise (%d -> %d)", before, after)
			}

			// A connects; the pinhole closes at once, before any transfer
			// command, so nobody (a NAT neighbour of A's, say) gets a second
			// connection queued behind A's.
			data, err := c.DialData(port)
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "the pinhole to close on arrival", func() bool {
				return strings.Contains(s.status(), "open pinholes: 0")
			})
			s.mustBeDropped(fam.a, addr, "second connection from the client's address before RETR")
			if _, err := c.Expect(150, "RETR f.bin"); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 64<<10)
			if _, err := io.ReadFull(data, got); err != nil {
				t.Fatal(err)
			}
			// 2. The pinhole is gone once taken: A's own second connection is dropped too.
			if st := s.status(); !strings.Contains(st, "open pinholes: 0") {
				t.Fatalf("pinhole still open after the data connection was taken:\n%s", st)
			}
			s.mustBeDropped(fam.a, addr, "second connection from the client")
			s.mustBeDropped(fam.b, addr, "second address during the transfer")

			rest, err := io.ReadAll(data)
			if err != nil {
				t.Fatal(err)
			}
			data.Close()
			if !bytes.Equal(append(got, rest...), want) {
				t.Fatal("transfer corrupted")
			}
			if rep, err := c.Read(); err != nil || rep.Code != 226 {
				t.Fatalf("after transfer: %v %v", rep, err)
			}
		})
	}
}

// TestNothingLeftBehind runs 1,000 transfers from lftp, curl, ftplib and a Go
// client, completed, cut off and never connected, then requires empty sets,
// no passive listener, and every port back in the pool.
func TestNothingLeftBehind(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{dataTimeout: "2s", pinholeTimeout: "10s"})
	randomFile(t, filepath.Join(s.root("alice"), "mixed.bin"), 64<<10)
	ctl := fmt.Sprintf("%s:%d", srvIP4, ctlPort)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	goRun := func(f func() error) {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- f() }()
	}
	// ftplib: 400 (200 complete, 100 cut off, 100 never connected).
	script, _ := filepath.Abs("../../testdata/ftplib_client.py")
	goRun(func() error {
		out, err := s.run(5*time.Minute, "python3", script, "mixed", srvIP4, fmt.Sprint(ctlPort), "alice", testUsers["alice"], "400")
		if err != nil || !strings.Contains(out, "mixed ok done=200 cut=100 never=100") {
			return fmt.Errorf("ftplib: %v\n%s", err, out)
		}
		return nil
	})
	// lftp: 250 downloads in one session.
	goRun(func() error {
		var b strings.Builder
		fmt.Fprintf(&b, "set xfer:clobber true\nset ftp:ssl-force true\nset ftp:ssl-protect-data true\nset ssl:verify-certificate false\nset net:max-retries 2\nset net:timeout 10\nopen -u alice,%s ftp://%s\n", testUsers["alice"], ctl)
		for range 250 {
			b.WriteString("get -O lftp-out mixed.bin\n")
		}
		b.WriteString("quit\n")
		os.MkdirAll(filepath.Join(s.dir, "lftp-out"), 0o755)
		os.WriteFile(filepath.Join(s.dir, "mixed.lftp"), []byte(b.String()), 0o600)
		if out, err := s.run(5*time.Minute, "lftp", "-f", "mixed.lftp"); err != nil {
			return fmt.Errorf("lftp: %v\n%s", err, out)
		}
		return nil
	})
	// curl: 50 downloads over one control connection (curl 7.88 stalls
	// 0.1-1 s per FTPS transfer on its side, so it gets the smallest share).
	goRun(func() error {
		args := curlArgs(s, "alice")
		args[len(args)-3] = "300" // --max-time for the whole run
		for range 50 {
			args = append(args, "-o", "/dev/null", "ftp://"+ctl+"/mixed.bin")
		}
		if out, err := s.run(5*time.Minute, "curl", args...); err != nil {
			return fmt.Errorf("curl: %v\n%s", err, out)
		}
		return nil
	})
	// Go client: 300 (150 complete, 50 ABOR mid-transfer, 50 reset, 45 never connected, 5 data timeout).
	goRun(func() error {
		c := s.client(cliB4, srvIP4, "alice")
		for i := range 300 {
			var err error
			switch {
			case i < 150:
				_, err = c.Retr("RETR mixed.bin")
			case i < 200:
				var data net.Conn
				if data, err = c.Begin("RETR mixed.bin"); err == nil {
					data.Read(make([]byte, 1))
					err = abort(c)
					data.Close()
				}
			case i < 250:
				var data net.Conn
				if data, err = c.Begin("RETR mixed.bin"); err == nil {
					data.Read(make([]byte, 1))
					nc := underTLS(data)
					nc.SetLinger(0)
					nc.Close()
					c.Read()
				}
			case i < 295:
				_, err = c.EPSV()
			default:
				if _, err = c.EPSV(); err == nil {
					var rep ftpclient.Reply
					if rep, err = c.Cmd("RETR mixed.bin"); err == nil && rep.Code < 400 {
						if rep.Code == 150 {
							rep, err = c.Read()
						}
						if err == nil && rep.Code < 400 {
							err = fmt.Errorf("RETR without a data connection: %v", rep)
						}
					}
				}
			}
			if err != nil {
				return fmt.Errorf("go client transfer %d: %w", i, err)
			}
		}
		c.Quit()
		return nil
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 15*time.Second, "all sessions to end", func() bool {
		return countLines(s.log.String(), "session end") >= 4
	})
	if st := s.status(); !strings.Contains(st, "open pinholes: 0") {
		t.Fatalf("pinholes left after 1,000 transfers:\n%s", st)
	}
	for _, set := range []string{"pinholes4", "pinholes6"} {
		out := s.ns.Run(t, "nft", "list", "set", "inet", "ftpsd", set)
		if strings.Contains(out, "elements") {
			t.Fatalf("set %s not empty:\n%s", set, out)
		}
	}
	if out := s.ns.Run(t, "ss", "-Htln", "sport >= :50000 and sport <= :50099"); strings.TrimSpace(out) != "" {
		t.Fatalf("passive listeners left open:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(s.log.String()), "\n")
	var last string
	for _, l := range lines {
		if strings.Contains(l, "session end") {
			last = l
		}
	}
	if !strings.Contains(last, "ports_free=100") {
		t.Fatalf("ports not all back in the pool: %s", last)
	}
	if n := countLines(s.log.String(), "msg=transfer", "result=ok"); n < 650 {
		t.Errorf("only %d completed transfers logged", n)
	}
}

// abort sends ABOR and reads replies up to ABOR's own: before it may come
// the transfer's 426, or its 226 if the data was already all sent.
func abort(c *ftpclient.Client) error {
	c.Conn().SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c.Conn(), "ABOR\r\n"); err != nil {
		return err
	}
	for range 3 {
		rep, err := c.Read()
		if err != nil {
			return err
		}
		if strings.Contains(rep.Msg, "ABOR") {
			return nil
		}
		if rep.Code != 426 && rep.Code != 226 {
			return fmt.Errorf("ABOR: unexpected %v", rep)
		}
	}
	return errors.New("ABOR: no reply to ABOR itself")
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCrashFailsClosed kills ftpsd with SIGKILL while a pinhole is open.
func TestCrashFailsClosed(t *testing.T) {
	ns := newNS(t)
	s := startFTPSD(t, ns, serverOpts{pinholeTimeout: "2s", dataTimeout: "2s"})
	c := s.client(cliA4, srvIP4, "alice")
	port, err := c.EPSV()
	if err != nil {
		t.Fatal(err)
	}
	elem := fmt.Sprintf("%s . %d", cliA4, port)
	s.cmd.Process.Kill()
	<-s.done

	table := ns.Run(t, "nft", "list", "table", "inet", "ftpsd")
	if !strings.Contains(table, "chain guard") || !strings.Contains(table, "drop") {
		t.Fatalf("guard chain gone after SIGKILL:\n%s", table)
	}
	if !strings.Contains(table, elem) {
		t.Fatalf("element %s should still be there until its timeout:\n%s", elem, table)
	}
	// The range stays guarded with nobody managing it: a listener on another
	// passive port is unreachable.
	other := 50000 + (port-50000+1)%100
	ns.Listen(t, fmt.Sprintf(":%d", other))
	s.mustBeDropped(cliA4, fmt.Sprintf("%s:%d", srvIP4, other), "passive range after crash")

	waitFor(t, 6*time.Second, "the element to expire", func() bool {
		return !strings.Contains(ns.Run(t, "nft", "list", "set", "inet", "ftpsd", "pinholes4"), elem)
	})

	// A restart starts from an empty set even if elements were still live.
	writeConfig(t, s.dir, serverOpts{pinholeTimeout: "60s"})
	s.start()
	c = s.client(cliA4, srvIP4, "alice")
	if _, err := c.EPSV(); err != nil {
		t.Fatal(err)
	}
	s.cmd.Process.Kill()
	<-s.done
	if !strings.Contains(ns.Run(t, "nft", "list", "set", "inet", "ftpsd", "pinholes4"), cliA4) {
		t.Fatal("expected a live element before the restart")
	}
	s.start()
	if st := s.status(); !strings.Contains(st, "open pinholes: 0") {
		t.Fatalf("restart did not flush stale pinholes:\n%s", st)
	}
}

func TestServeRefusesWithoutNetAdmin(t *testing.T) {
	ns := newNS(t)
	dir := t.TempDir()
	// The unprivileged server must be able to read its config and make
	// its state_dir, so that what stops it is the firewall.
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o777)
	cfg := writeConfig(t, dir, serverOpts{})
	// Listeners are bound before the firewall is set up: give this one
	// ports an unprivileged process may bind, so the firewall is what fails.
	text, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, bytes.ReplaceAll(text, []byte(`:990"`), []byte(`:9990"`)), 0o644)
	os.Chmod(cfg, 0o644)
	cmd := ns.Command("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", ftpsdBin, "serve", "-c", cfg)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("serve started without CAP_NET_ADMIN:\n%s", out)
	}
	for _, want := range []string{"CAP_NET_ADMIN", `mode = "off"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("error does not mention %s:\n%s", want, out)
		}
	}
}

func TestFirewallResetTouchesOnlyItsTable(t *testing.T) {
	ns := newNS(t)
	ns.Run(t, "nft", "add table inet other; add chain inet other c { type filter hook input priority 0; policy accept; }; add rule inet other c tcp dport 1234 counter")
	before := ns.Run(t, "nft", "list", "table", "inet", "other")
	s := startFTPSD(t, ns, serverOpts{})
	s.stop()
	if table := ns.Run(t, "nft", "list", "table", "inet", "ftpsd"); !strings.Contains(table, "chain guard") {
		t.Fatalf("a stopped ftpsd must leave its guard (fail closed):\n%s", table)
	}
	out := s.mustRun(10*time.Second, ftpsdBin, "firewall", "reset", "-c", s.cfgPath)
	if !strings.Contains(out, "removed") {
		t.Fatalf("reset said %q", out)
	}
	tables := ns.Run(t, "nft", "list", "tables")
	if strings.Contains(tables, "ftpsd") {
		t.Fatalf("ftpsd table still there:\n%s", tables)
	}
	if after := ns.Run(t, "nft", "list", "table", "inet", "other"); after != before {
		t.Fatalf("other table changed:\n%s\nvs\n%s", before, after)
	}
}

// TestPortExhaustion: with every passive port leased, EPSV gets a prompt 421
// instead of a hang, and a freed port is handed out again.
func TestPortExhaustion(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{ports: "50000-50001"})
	a := s.client(cliA4, srvIP4, "alice")
	b := s.client(cliB4, srvIP4, "alice")
	c := s.client(cliA4, srvIP4, "alice")
	if _, err := a.EPSV(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.EPSV(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rep, err := c.Cmd("EPSV")
	if err != nil || rep.Code != 421 {
		t.Fatalf("EPSV with no free port: %v %v, want 421", rep, err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("exhaustion took %v to report", time.Since(start))
	}
	a.Quit()
	waitFor(t, 5*time.Second, "a port to come back", func() bool {
		_, err := c.EPSV()
		return err == nil
	})
	b.Quit()
	c.Quit()
	// IPv6 control connections get a clear answer to PASV, and no port is
	// leased for it, however often they ask.
	v6 := s.client(cliA6, srvIP6, "alice")
	for range 3 {
		if rep, _ := v6.Cmd("PASV"); rep.Code < 400 || !strings.Contains(rep.Msg, "EPSV") {
			t.Fatalf("PASV over IPv6: %v, want a refusal pointing to EPSV", rep)
		}
	}
	if _, err := v6.EPSV(); err != nil {
		t.Fatal(err)
	}
	if _, err := v6.EPSV(); err != nil {
		t.Fatalf("second EPSV (the first lease must have been released): %v", err)
	}
}
