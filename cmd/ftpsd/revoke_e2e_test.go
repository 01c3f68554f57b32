package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ftpsd/ftpsd/internal/ftpclient"
)

// userBlock is a [[user]] table for extra users of a harness config.
func userBlock(t *testing.T, dir, name, password, root string, readOnly bool) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("\n[[user]]\nname = %q\npassword_hash = %q\nroot = %q\nread_only = %v\n", name, h, root, readOnly)
}

// await421 reads replies until the server's 421, the only proper end of a
// revoked session; replies to a cut transfer may come first.
func await421(c *ftpclient.Client) (ftpclient.Reply, error) {
	c.Timeout = 10 * time.Second
	for range 4 {
		rep, err := c.Read()
		if err != nil || rep.Code == 421 {
			return rep, err
		}
	}
	return ftpclient.Reply{}, fmt.Errorf("no 421 among the replies")
}

// TestReloadRevokes: on SIGHUP the sessions of a removed user (one in the
// middle of a download), and of users whose password_hash, root or
// read_only changed, end with a 421; a session of an unchanged user goes
// on, and a config with errors is refused with file, line and key.
func TestReloadRevokes(t *testing.T) {
	ns := newNS(t)
	dir := t.TempDir()
	extra := map[string]string{"bob": "bob-pw", "carol": "carol-pw", "dave": "dave-pw", "erin": "erin-pw"}
	for u, p := range extra {
		testUsers[u] = p
	}
	t.Cleanup(func() {
		for u := range extra {
			delete(testUsers, u)
		}
	})
	users := func(carolPW, daveRoot string, erinRO, withBob bool) string {
		var b strings.Builder
		if withBob {
			b.WriteString(userBlock(t, dir, "bob", "bob-pw", filepath.Join(dir, "bob"), false))
		}
		b.WriteString(userBlock(t, dir, "carol", carolPW, filepath.Join(dir, "carol"), false))
		b.WriteString(userBlock(t, dir, "dave", "dave-pw", daveRoot, false))
		b.WriteString(userBlock(t, dir, "erin", "erin-pw", filepath.Join(dir, "erin"), erinRO))
		return b.String()
	}
	s := &ftpsd{t: t, ns: ns, dir: dir}
	s.cfgPath = writeConfig(t, dir, serverOpts{extra: users("carol-pw", filepath.Join(dir, "dave"), false, true)})
	s.start()
	randomFile(t, filepath.Join(dir, "bob", "big.bin"), 64<<20)

	keep := s.client(cliA4, srvIP4, "alice")
	bob := s.client(cliA4, srvIP4, "bob")
	carol := s.client(cliA4, srvIP4, "carol")
	dave := s.client(cliA4, srvIP4, "dave")
	erin := s.client(cliB4, srvIP4, "erin")
	data, err := bob.Begin("RETR big.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	if _, err := io.ReadFull(data, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}

	// A broken config changes nothing, and says where it is broken.
	good, _ := os.ReadFile(s.cfgPath)
	os.WriteFile(s.cfgPath, append(append([]byte(nil), good...), "\n[metrics]\nlisten = \"nowhere\"\n"...), 0o600)
	s.cmd.Process.Signal(syscall.SIGHUP)
	lines := strings.Count(string(good), "\n") + 3
	s.waitLog(fmt.Sprintf("file=%s line=%d key=metrics.listen", s.cfgPath, lines), 5*time.Second)
	for _, c := range []*ftpclient.Client{keep, carol, dave, erin} {
		if _, err := c.Expect(200, "NOOP"); err != nil {
			t.Fatalf("session hit by a refused reload: %v", err)
		}
	}

	// bob removed, carol's password, dave's root and erin's read_only changed.
	writeConfig(t, dir, serverOpts{extra: users("carol-new", filepath.Join(dir, "dave2"), true, false)})
	start := time.Now()
	s.cmd.Process.Signal(syscall.SIGHUP)
	for name, c := range map[string]*ftpclient.Client{"bob": bob, "carol": carol, "dave": dave, "erin": erin} {
		rep, err := await421(c)
		if err != nil {
			t.Errorf("%s: revoked session did not end with a 421: %v", name, err)
			continue
		}
		t.Logf("%s: %v after %v", name, rep, time.Since(start).Round(time.Millisecond))
		if _, err := c.Read(); err == nil {
			t.Errorf("%s: control connection still open after the 421", name)
		}
	}
	s.waitLog("sessions_revoked=4", 5*time.Second)
	// The cut download ends too.
	data.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, data); err != nil && !strings.Contains(err.Error(), "reset") {
		t.Logf("download ended with %v", err)
	}

	// The unchanged session goes on, with transfers.
	if _, err := keep.Expect(200, "NOOP"); err != nil {
		t.Fatalf("unchanged user's session hit by the reload: %v", err)
	}
	if _, err := keep.Retr("LIST"); err != nil {
		t.Fatalf("unchanged user's transfer after the reload: %v", err)
	}
	// Removed users cannot come back; changed ones log in with the new config.
	c, _, err := ftpclient.Dial(s.dial(cliA4, 2*time.Second), fmt.Sprintf("%s:%d", srvIP4, ctlPort), clientTLS, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.AuthTLS(); err != nil {
		t.Fatal(err)
	}
	if err := c.Login("bob", "bob-pw"); err == nil {
		t.Fatal("removed user logged in after the reload")
	}
	testUsers["carol"] = "carol-new"
	s.client(cliA4, srvIP4, "carol")
}
