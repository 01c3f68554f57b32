package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ftpsd/ftpsd/internal/ftpclient"
)

var passwordRE = regexp.MustCompile(`user ftp password: (\S+)`)

// TestBuiltInDefault runs `ftpsd serve` with no config at all, as the README's first command does.
func TestBuiltInDefault(t *testing.T) {
	ns := newNS(t)
	s := &ftpsd{t: t, ns: ns, dir: t.TempDir()}
	s.start("serve")
	pass := s.generatedPassword()
	if strings.Contains(s.log.String(), pass) {
		t.Fatal("the generated password is in the log")
	}
	os.WriteFile(filepath.Join(s.dir, "ftpsd-data", "files", "hello.txt"), []byte("hello"), 0o644)
	out := s.mustRun(30*time.Second, "curl", "--silent", "--show-error", "--ssl-reqd", "--insecure",
		"--user", "ftp:"+pass, fmt.Sprintf("ftp://%s:2121/hello.txt", srvIP4))
	if out != "hello" {
		t.Fatalf("download on the default config: %q", out)
	}
	// The default guards 50000-50099 with nftables.
	st := s.mustRun(10*time.Second, ftpsdBin, "firewall", "status")
	if !strings.Contains(st, "50000-50099") {
		t.Fatalf("default firewall status:\n%s", st)
	}
	cert, err := os.ReadFile(filepath.Join(s.dir, "ftpsd-data", "cert.pem"))
	if err != nil || !bytes.Contains(cert, []byte("CERTIFICATE")) {
		t.Fatalf("no self-signed certificate in ftpsd-data: %v", err)
	}
	s.stop()
	// A restart reuses the certificate and makes a new password.
	s.start("serve")
	again, _ := os.ReadFile(filepath.Join(s.dir, "ftpsd-data", "cert.pem"))
	if !bytes.Equal(cert, again) {
		t.Error("certificate regenerated on restart")
	}
	if again := s.generatedPassword(); again == pass {
		t.Errorf("restart kept the password %q", again)
	}
}

// generatedPassword waits for the password ftpsd prints on standard output
// once it serves (just after it starts accepting).
func (s *ftpsd) generatedPassword() string {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := passwordRE.FindStringSubmatch(s.stdout.String()); m != nil {
			return m[1]
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no generated password on stdout: %q", s.stdout.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCheckAndServeRejectBadConfig(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[server]\nlisten = [\"127.0.0.1:2121\"]\nidle_timeout = \"5 minutes\"\n"), 0o600)
	for _, args := range [][]string{{"check", "-c", bad}, {"serve", "-c", bad}} {
		cmd := exec.Command(ftpsdBin, args...)
		out, err := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); err == nil || code != 1 {
			t.Errorf("%s: exit %d, want 1\n%s", args[0], code, out)
		}
		if !strings.Contains(string(out), bad+":3:") || !strings.Contains(string(out), "server.idle_timeout") {
			t.Errorf("%s: error does not name file, line and key:\n%s", args[0], out)
		}
	}
	good := writeConfig(t, dir, serverOpts{})
	out, err := exec.Command(ftpsdBin, "check", "-c", good).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("check on a good config: %v\n%s", err, out)
	}
}

func TestPasswd(t *testing.T) {
	cmd := exec.Command(ftpsdBin, "passwd")
	cmd.Stdin = strings.NewReader("correct horse\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	hash := strings.TrimSpace(string(out))
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte("correct horse")) != nil {
		t.Fatalf("passwd printed %q, which does not verify", hash)
	}
	cmd = exec.Command(ftpsdBin, "passwd")
	cmd.Stdin = strings.NewReader("\n")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("empty password accepted: %s", out)
	}
}

// TestReloadKeepsSessions: SIGHUP adds a user without dropping a running session.
func TestReloadKeepsSessions(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{})
	c := s.client(cliA4, srvIP4, "alice")
	h, _ := bcrypt.GenerateFromPassword([]byte("bob-secret"), bcrypt.MinCost)
	os.MkdirAll(filepath.Join(s.dir, "bob"), 0o755)
	testUsers["bob"] = "bob-secret"
	t.Cleanup(func() { delete(testUsers, "bob") })
	writeConfig(t, s.dir, serverOpts{extra: fmt.Sprintf("\n[[user]]\nname = \"bob\"\npassword_hash = %q\nroot = %q\n", h, filepath.Join(s.dir, "bob"))})
	s.cmd.Process.Signal(syscall.SIGHUP)
	s.waitLog("reloaded", 5*time.Second)
	if _, err := c.Expect(200, "NOOP"); err != nil {
		t.Fatalf("session dropped by reload: %v", err)
	}
	if _, err := c.Retr("LIST"); err != nil {
		t.Fatalf("transfer after reload: %v", err)
	}
	s.client(cliA4, srvIP4, "bob")

	// A broken config is refused and the running one kept.
	os.WriteFile(s.cfgPath, []byte("[server\n"), 0o600)
	s.cmd.Process.Signal(syscall.SIGHUP)
	s.waitLog("reload refused", 5*time.Second)
	s.client(cliA4, srvIP4, "bob")
}

// TestGracefulStop: SIGTERM closes idle sessions at once, lets a running
// transfer finish, removes its pinholes and exits 0.
func TestGracefulStop(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{})
	want := randomFile(t, filepath.Join(s.root("alice"), "f.bin"), 16<<20)
	idle := s.client(cliB4, srvIP4, "alice")
	busy := s.client(cliA4, srvIP4, "alice")
	data, err := busy.Begin("RETR f.bin")
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 1<<20)
	if _, err := io.ReadFull(data, head); err != nil {
		t.Fatal(err)
	}
	pending := s.client(cliB4, srvIP4, "alice")
	if _, err := pending.EPSV(); err != nil {
		t.Fatal(err)
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	idle.Timeout = 5 * time.Second
	if rep, err := idle.Read(); err == nil && rep.Code != 421 {
		t.Fatalf("idle session not closed on SIGTERM: %v", rep)
	}
	rest, err := io.ReadAll(data)
	if err != nil {
		t.Fatalf("running transfer cut by SIGTERM: %v", err)
	}
	data.Close()
	if !bytes.Equal(append(head, rest...), want) {
		t.Fatal("transfer corrupted during shutdown")
	}
	busy.Read() // 226
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatal("ftpsd did not exit after its last transfer")
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	out := s.ns.Run(t, "nft", "list", "table", "inet", "ftpsd")
	if strings.Contains(out, "elements") {
		t.Fatalf("pinholes left after a graceful stop:\n%s", out)
	}
	if !strings.Contains(out, "chain guard") {
		t.Fatalf("guard removed on stop (must fail closed):\n%s", out)
	}
}

// TestMaxClients applies the global limit across addresses.
func TestMaxClients(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{maxClients: 2, perIP: 2})
	// The start-up probe's own connection must be gone before counting.
	s.waitLog("session end", 5*time.Second)
	addr := fmt.Sprintf("%s:%d", srvIP4, ctlPort)
	for _, src := range []string{cliA4, cliB4} {
		c, rep, err := ftpclient.Dial(s.dial(src, 2*time.Second), addr, clientTLS, false)
		if err != nil || rep.Code != 220 {
			t.Fatalf("within max_clients: %v %v", rep, err)
		}
		defer c.Close()
	}
	_, rep, err := ftpclient.Dial(s.dial("127.0.0.4", 2*time.Second), addr, clientTLS, false)
	if err != nil || rep.Code != 421 {
		t.Fatalf("over max_clients: %v %v, want 421", rep, err)
	}
}

// TestImplicitHandshakesCountTowardsMaxClients: connections still in their
// implicit-TLS handshake hold a slot, so silent connections cannot push the
// server past max_clients.
func TestImplicitHandshakesCountTowardsMaxClients(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{maxClients: 2, perIP: 2})
	s.waitLog("session end", 5*time.Second)
	imp := fmt.Sprintf("%s:%d", srvIP4, impPort)
	for _, src := range []string{"127.0.0.5", "127.0.0.6"} {
		c, err := s.dial(src, 2*time.Second)("tcp", imp)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close() // silent: never starts TLS
	}
	// Give the server a moment to admit both.
	time.Sleep(200 * time.Millisecond)
	extra, err := s.dial("127.0.0.7", 2*time.Second)("tcp", imp)
	if err != nil {
		t.Fatal(err)
	}
	extra.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); isTimeout(err) {
		t.Fatal("a third implicit connection was kept open past max_clients")
	}
	_, rep, err := ftpclient.Dial(s.dial(cliB4, 2*time.Second), fmt.Sprintf("%s:%d", srvIP4, ctlPort), clientTLS, false)
	if err != nil || rep.Code != 421 {
		t.Fatalf("explicit connection while two implicit handshakes are pending: %v %v, want 421", rep, err)
	}
}

// TestShutdownWithPendingTransfers: sessions blocked waiting for a data
// connection that never comes do not hold up SIGTERM.
func TestShutdownWithPendingTransfers(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{dataTimeout: "20s", maxClients: 20, perIP: 20})
	os.WriteFile(filepath.Join(s.root("alice"), "f"), []byte("x"), 0o644)
	for range 5 {
		c := s.client(cliA4, srvIP4, "alice")
		if _, err := c.EPSV(); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c.Conn(), "RETR f\r\n")
	}
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM waited on transfers whose data connection never came")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown took %v", d)
	}
}
