package main

// End-to-end tests for hostile clients (issue 9): bans and the tarpit,
// IPv6 counted by prefix, the fair passive pool, data TLS bound to its
// control session, TLS hardening and stalled handshakes.

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/internal/ftpclient"
)

// An IPv6 /64 other than the one of srvIP6/cliA6/cliB6 (fd00::/64), for
// tests that treat a whole prefix as one source.
var prefixB6 = []string{"fd00:0:0:b::3", "fd00:0:0:b::4", "fd00:0:0:b::5"}

func addPrefixB6(t *testing.T, s *ftpsd) {
	t.Helper()
	for _, a := range prefixB6 {
		s.ns.Run(t, "ip", "-6", "addr", "add", a+"/128", "dev", "lo", "nodad")
	}
}

func ctlAddr(host string) string { return net.JoinHostPort(host, fmt.Sprint(ctlPort)) }

// failLogin makes one wrong-password login from src and returns the reply
// to PASS (or the error if the connection was cut).
func (s *ftpsd) failLogin(src, dst string) (ftpclient.Reply, error) {
	c, _, err := ftpclient.Dial(s.dial(src, 2*time.Second), ctlAddr(dst), clientTLS, false)
	if err != nil {
		return ftpclient.Reply{}, err
	}
	defer c.Close()
	c.Timeout = 20 * time.Second // the tarpit holds the reply back
	if err := c.AuthTLS(); err != nil {
		return ftpclient.Reply{}, err
	}
	if _, err := c.Cmd("USER alice"); err != nil {
		return ftpclient.Reply{}, err
	}
	return c.Cmd("PASS wrong-password")
}

// refusedAtAccept checks that a connection from src is closed without a
// single byte of reply.
func (s *ftpsd) refusedAtAccept(src, dst string) error {
	c, err := s.dial(src, 2*time.Second)("tcp", ctlAddr(dst))
	if err != nil {
		return nil // refused even earlier: fine
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 64))
	switch {
	case n > 0:
		return fmt.Errorf("banned source %s got a reply", src)
	case isTimeout(err):
		return fmt.Errorf("banned source %s was kept open", src)
	}
	return nil
}

func TestBanAfterFailedLogins(t *testing.T) {
	// Firewall off: the accept loop alone must hold the ban.
	s := startFTPSD(t, newNS(t), serverOpts{firewall: "off", extra: banSection(3)})
	addPrefixB6(t, s)

	// IPv4: an attacker address, and a legitimate one that keeps working.
	for i := range 3 {
		rep, err := s.failLogin(cliB4, srvIP4)
		if i < 2 && (err != nil || rep.Code != 530) {
			t.Fatalf("failure %d: %v %v, want 530", i+1, rep, err)
		}
	}
	s.waitLog("msg=ban", 10*time.Second)
	if err := s.refusedAtAccept(cliB4, srvIP4); err != nil {
		t.Fatal(err)
	}
	if err := s.refusedAtAccept(cliB4, srvIP6); err != nil && strings.Contains(err.Error(), "reply") {
		// cliB4 cannot reach srvIP6 anyway; only a reply would be wrong.
		t.Fatal(err)
	}
	c := s.client(cliA4, srvIP4, "alice")
	if _, err := c.Retr("LIST"); err != nil {
		t.Fatalf("legitimate client after the ban: %v", err)
	}

	// IPv6: failures from three addresses of one /64 ban the /64. An
	// unauthenticated session already open from the prefix is closed.
	idle, _, err := ftpclient.Dial(s.dial(prefixB6[2], 2*time.Second), ctlAddr(srvIP6), clientTLS, false)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	for i := range 3 {
		rep, err := s.failLogin(prefixB6[i%2], srvIP6)
		if i < 2 && (err != nil || rep.Code != 530) {
			t.Fatalf("IPv6 failure %d: %v %v, want 530", i+1, rep, err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for countLines(s.log.String(), "msg=ban") < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no second ban for the /64")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, a := range prefixB6 {
		if err := s.refusedAtAccept(a, srvIP6); err != nil {
			t.Fatal(err)
		}
	}
	idle.Timeout = 5 * time.Second
	if _, err := idle.Read(); err == nil || isTimeout(errors.Unwrap(err)) {
		t.Fatalf("open session of the banned /64 not closed: %v", err)
	}
	c6 := s.client(cliA6, srvIP6, "alice")
	if _, err := c6.Retr("LIST"); err != nil {
		t.Fatalf("IPv6 client of another /64 after the ban: %v", err)
	}

	log := s.log.String()
	if n := countLines(log, "msg=ban", "source=127.0.0.3/32", "duration=1h0m0s", "reason=", "failed login"); n != 1 {
		t.Errorf("want one ban line for 127.0.0.3/32 naming reason and duration, got %d:\n%s", n, log)
	}
	if n := countLines(log, "msg=ban", "source=fd00:0:0:b::/64"); n != 1 {
		t.Errorf("want one ban line for fd00:0:0:b::/64, got %d", n)
	}
	if n := countLines(log, "login failed", "tarpit="); n < 4 {
		t.Errorf("failures before the ban were not tarpitted (%d lines)", n)
	}
}

func banSection(maxFailures int) string {
	return fmt.Sprintf("\n[ban]\nmax_failures = %d\nwindow = \"10m\"\nduration = \"1h\"\n", maxFailures)
}

// A plain-text USER while TLS is required counts half a failure.
func TestClearTextUserCountsTowardsBan(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{firewall: "off", extra: banSection(2)})
	for i := range 4 {
		c, _, err := ftpclient.Dial(s.dial(cliB4, 2*time.Second), ctlAddr(srvIP4), clientTLS, false)
		if err != nil {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
		c.Timeout = 20 * time.Second
		rep, err := c.Cmd("USER alice")
		c.Close()
		if i < 3 && (err != nil || rep.Code != 530) {
			t.Fatalf("clear-text USER %d: %v %v, want 530", i+1, rep, err)
		}
	}
	s.waitLog("msg=ban", 10*time.Second)
	if err := s.refusedAtAccept(cliB4, srvIP4); err != nil {
		t.Fatal(err)
	}
	if n := countLines(s.log.String(), "msg=ban", "source=127.0.0.3/32", "clear-text USER"); n != 1 {
		t.Errorf("want one ban line naming the clear-text USER, got %d", n)
	}
}

// max_clients_per_ip counts an IPv6 /64 as one client address.
func TestPerIPLimitCountsIPv6Prefix(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{perIP: 2})
	addPrefixB6(t, s)
	for _, a := range prefixB6[:2] {
		c, rep, err := ftpclient.Dial(s.dial(a, 2*time.Second), ctlAddr(srvIP6), clientTLS, false)
		if err != nil || rep.Code != 220 {
			t.Fatalf("from %s: %v %v", a, rep, err)
		}
		defer c.Close()
	}
	_, rep, err := ftpclient.Dial(s.dial(prefixB6[2], 2*time.Second), ctlAddr(srvIP6), clientTLS, false)
	if err != nil || rep.Code != 421 {
		t.Fatalf("third address of the /64: %v %v, want 421", rep, err)
	}
	c, rep, err := ftpclient.Dial(s.dial(cliA6, 2*time.Second), ctlAddr(srvIP6), clientTLS, false)
	if err != nil || rep.Code != 220 {
		t.Fatalf("another /64: %v %v", rep, err)
	}
	c.Close()
}

// One address holding unused EPSV replies gets at most its share of the
// pool (a fifth by default); others still get ports and transfer.
func TestPassivePoolShare(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{ports: "50000-50009", dataTimeout: "30s"})
	addPrefixB6(t, s)
	want := randomFile(t, filepath.Join(s.root("alice"), "f.bin"), 100_000)
	hold := func(src, dst string) ftpclient.Reply {
		c := s.client(src, dst, "alice")
		rep, err := c.Cmd("EPSV")
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	for i := range 2 {
		if rep := hold(cliB4, srvIP4); rep.Code != 229 {
			t.Fatalf("EPSV %d within the share: %v", i+1, rep)
		}
	}
	rep := hold(cliB4, srvIP4)
	if rep.Code < 400 || rep.Code > 499 || !strings.Contains(rep.Msg, "passive ports") {
		t.Fatalf("EPSV over the share: %v, want a 4xx naming the passive ports", rep)
	}
	// The same over IPv6, for addresses of one /64.
	for i := range 2 {
		if rep := hold(prefixB6[i], srvIP6); rep.Code != 229 {
			t.Fatalf("IPv6 EPSV %d within the share: %v", i+1, rep)
		}
	}
	if rep := hold(prefixB6[2], srvIP6); rep.Code < 400 || rep.Code > 499 {
		t.Fatalf("IPv6 EPSV over the /64's share: %v, want 4xx", rep)
	}
	// Others still transfer, with curl and over IPv6.
	s.mustRun(30*time.Second, "curl", curlArgs(s, "alice", "-o", "got.bin", fmt.Sprintf("ftp://%s:%d/f.bin", srvIP4, ctlPort))...)
	if got, _ := os.ReadFile(filepath.Join(s.dir, "got.bin")); sum(got) != sum(want) {
		t.Fatal("curl download differs")
	}
	c := s.client(cliA6, srvIP6, "alice")
	if got, err := c.Retr("RETR f.bin"); err != nil || sum(got) != sum(want) {
		t.Fatalf("IPv6 download while others hold their share: %v", err)
	}
}

// Data TLS must resume the control connection's own session.
func TestDataTLSBoundToControlSession(t *testing.T) {
	bob := fmt.Sprintf("\n[[user]]\nname = \"bob\"\npassword_hash = %q\nroot = %q\nrequire_session_reuse = false\n", hashOnce()["alice"], t.TempDir())
	s := startFTPSD(t, newNS(t), serverOpts{extra: bob})
	want := randomFile(t, filepath.Join(s.root("alice"), "f.bin"), 200_000)
	base := fmt.Sprintf("ftp://%s:%d/", srvIP4, ctlPort)
	const optOut = `require_session_reuse = false for user "alice"`

	// curl (OpenSSL) and Python with session= pass: TestCurlUploadListDownload,
	// TestLftpMirrorRoundTrip and TestFtplibPasvAndEpsv run with reuse
	// required too. Here: curl without session reuse is refused, and told why.
	out, err := s.run(30*time.Second, "curl", curlArgs(s, "alice", "--no-sessionid", "-o", "x.bin", base+"f.bin")...)
	if err == nil {
		t.Fatalf("curl --no-sessionid downloaded:\n%s", out)
	}
	s.mustRun(30*time.Second, "curl", curlArgs(s, "alice", "-o", "ok.bin", base+"f.bin")...)
	if got, _ := os.ReadFile(filepath.Join(s.dir, "ok.bin")); sum(got) != sum(want) {
		t.Fatal("curl with session reuse: download differs")
	}

	// Python's plain FTP_TLS does a full handshake, after the 150 (it waits
	// for it before starting TLS): refused in the handshake, and the reason,
	// with the way out, is in the 550 that follows (and the log).
	script, _ := filepath.Abs("../../testdata/ftplib_client.py")
	out, err = s.run(60*time.Second, "python3", script, "roundtrip", srvIP4, fmt.Sprint(ctlPort), "alice", testUsers["alice"], "epsv", "noreuse")
	// Under TLS 1.3 the client may finish its side of the handshake before
	// the server's refusal arrives: then it sees the 550, else an SSL error.
	if err == nil || strings.Contains(out, "roundtrip ok") ||
		!(strings.Contains(out, "SSL") || strings.Contains(out, "require_session_reuse = false for user")) {
		t.Fatalf("ftplib without reuse: %v\n%s", err, out)
	}
	if n := countLines(s.log.String(), "msg=transfer", "ftplib-epsv.bin", "require_session_reuse = false for user"); n != 1 {
		t.Fatalf("ftplib without reuse: %d transfer lines name the way out, want 1", n)
	}
	// ... and passes for a user who opted out.
	out = s.mustRun(60*time.Second, "python3", script, "roundtrip", srvIP4, fmt.Sprint(ctlPort), "bob", testUsers["alice"], "epsv", "noreuse")
	if !strings.Contains(out, "roundtrip ok") {
		t.Fatalf("opted-out user: %s", out)
	}
	// lftp (GnuTLS) with reuse.
	s.mustRun(60*time.Second, "lftp", "-e", fmt.Sprintf("set ftp:ssl-force true; set ftp:ssl-protect-data true; set ssl:verify-certificate false; set net:max-retries 1; get f.bin -o lftp.bin; quit"),
		"-u", "alice,"+testUsers["alice"], fmt.Sprintf("ftp://%s:%d", srvIP4, ctlPort))
	if got, _ := os.ReadFile(filepath.Join(s.dir, "lftp.bin")); sum(got) != sum(want) {
		t.Fatal("lftp download differs")
	}

	// Go client, fine-grained: a full handshake, then another session's ticket.
	a := s.client(cliA4, srvIP4, "alice")
	if _, err := a.Retr("RETR f.bin"); err != nil { // a's cache now holds a's tickets
		t.Fatalf("resuming client: %v", err)
	}
	b := s.client(cliA4, srvIP4, "alice")
	fresh := &tls.Config{InsecureSkipVerify: true, ServerName: srvIP4, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	// refused opens a data connection with conf, its hello sent before the
	// RETR or only after the 150, and wants the transfer refused, saying how
	// to opt out, with no data flowing.
	refused := func(c *ftpclient.Client, name string, conf *tls.Config, helloFirst bool) {
		t.Helper()
		port, err := c.EPSV()
		if err != nil {
			t.Fatal(err)
		}
		data, err := c.DialDataTLS(port, conf)
		if err != nil {
			t.Fatal(err)
		}
		defer data.Close()
		hs := make(chan error, 1)
		handshake := func() { data.SetDeadline(time.Now().Add(10 * time.Second)); hs <- data.Handshake() }
		if helloFirst {
			go handshake()
		}
		rep, err := c.Cmd("RETR f.bin")
		if err != nil {
			t.Fatal(err)
		}
		if rep.Code == 150 { // the check fell to the handshake: the final reply follows
			if !helloFirst {
				go handshake()
			}
			rep, err = c.Read()
		} else if !helloFirst {
			t.Fatalf("%s: %v before the client's hello, want 150", name, rep)
		}
		if err != nil || rep.Code < 400 || !strings.Contains(rep.Msg, optOut) {
			t.Fatalf("%s: %v %v, want a refusal that says how to opt out", name, rep, err)
		}
		if err := <-hs; err == nil {
			if _, err := data.Read(make([]byte, 1)); err == nil {
				t.Fatalf("%s: data flowed", name)
			}
		}
	}
	// a's RETR above sent its hello only after the 150, as lftp and ftplib
	// do: ftpsd no longer waits for a's hellos before the 150, and still
	// refuses what does not resume a's session, sent early or late. (A
	// handshake that fails drops the ticket it offered from the client's
	// cache: each attempt with another session's ticket takes a new one.)
	other := func() *tls.Config { return s.client(cliA4, srvIP4, "alice").TLSConfig() }
	fresh2 := &tls.Config{InsecureSkipVerify: true, ServerName: srvIP4, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	refused(a, "after a late hello: full handshake", fresh2, false)
	refused(a, "after a late hello: another session's ticket", other(), false)
	refused(a, "after a late hello: another session's ticket, sent early", other(), true)
	// No refused handshake left a ticket bound to a's session behind
	// (TLS 1.3 sends tickets before the check): fresh2 still cannot resume a.
	refused(a, "after a late hello: the ticket of a refused handshake", fresh2, false)
	if got, err := a.Retr("RETR f.bin"); err != nil || sum(got) != sum(want) {
		t.Fatalf("a resuming its own session after the refusals: %v", err)
	}
	refused(b, "full handshake", fresh, true)
	refused(b, "another session's ticket", a.TLSConfig(), true)
	if n := countLines(s.log.String(), "data connection refused"); n < 2 {
		t.Errorf("refusals logged: %d", n)
	}
}

// TLS 1.2 offers only ECDHE with AES-GCM or ChaCha20.
func TestCBCSuitesRefused(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{})
	cbc := "AES128-SHA:AES256-SHA:AES128-SHA256:AES256-SHA256:ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384"
	sclient := func(args ...string) (string, error) {
		return s.run(20*time.Second, "openssl", append([]string{"s_client", "-brief"}, args...)...)
	}
	for _, target := range [][]string{
		{"-starttls", "ftp", "-connect", ctlAddr(srvIP4)},
		{"-connect", net.JoinHostPort(srvIP4, fmt.Sprint(impPort))},
	} {
		out, err := sclient(append([]string{"-tls1_2", "-cipher", cbc}, target...)...)
		if err == nil || strings.Contains(out, "CONNECTION ESTABLISHED") {
			t.Fatalf("CBC suites accepted on %v:\n%s", target, out)
		}
		out, err = sclient(append([]string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305"}, target...)...)
		if !strings.Contains(out, "CONNECTION ESTABLISHED") {
			t.Fatalf("AEAD suite refused on %v (%v):\n%s", target, err, out)
		}
	}
}

// Connections that stall after AUTH TLS are cut by the handshake deadline
// (10 s), not held for idle_timeout; a legitimate client still gets in.
func TestStalledAuthTLSHandshakeCut(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{idleTimeout: "5m"})
	const n = 10
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _, err := ftpclient.Dial(s.dial(cliB4, 2*time.Second), ctlAddr(srvIP4), clientTLS, false)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			if _, err := c.Expect(234, "AUTH TLS"); err != nil {
				errs <- err
				return
			}
			// Stall: never send a ClientHello. The server must hang up within 15 s.
			c.Conn().SetReadDeadline(time.Now().Add(15 * time.Second))
			_, err = c.Conn().Read(make([]byte, 1))
			if isTimeout(err) {
				errs <- fmt.Errorf("stalled handshake %d still open after 15 s", i)
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	c := s.client(cliA4, srvIP4, "alice")
	if _, err := c.Retr("LIST"); err != nil {
		t.Fatalf("legitimate client while handshakes stall: %v", err)
	}
	// An idle client past the handshake is not cut by the handshake deadline.
	idleAuth := time.Now()
	idle := s.client(cliA4, srvIP4, "alice")
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	time.Sleep(time.Until(idleAuth.Add(11 * time.Second)))
	if _, err := idle.Expect(257, "PWD"); err != nil {
		t.Fatalf("a logged-in client idle for over 10 s after AUTH TLS was cut: %v", err)
	}
	if bytes.Contains([]byte(s.log.String()), []byte("panic")) {
		t.Fatal("server panicked")
	}
}
