package main

import (
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// procStatus reads the fields of /proc/PID[/task/TID]/status.
func procStatus(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return m
}

// setServerKeys adds keys to the [server] table of a harness config.
func setServerKeys(t *testing.T, path, keys string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "[server]\n", "[server]\n"+keys+"\n", 1)
	if err := os.WriteFile(path, []byte(s), 0o640); err != nil {
		t.Fatal(err)
	}
}

// setUserKeys adds keys to one [[user]] table of a harness config.
func setUserKeys(t *testing.T, path, name, keys string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	line := fmt.Sprintf("name = %q\n", name)
	s := strings.Replace(string(b), line, line+keys+"\n", 1)
	if err := os.WriteFile(path, []byte(s), 0o640); err != nil {
		t.Fatal(err)
	}
}

// nobody is the unprivileged account the tests switch to: it exists on
// every Debian system, so no test has to create accounts on the host.
func nobody(t *testing.T) (uid, gid int) {
	t.Helper()
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("the tests need the account nobody: %v", err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// startAsNobody starts s as root with run_as = "nobody" (and keys, more
// [server] lines), nobody owning its config and owned, and returns once
// ftpsd has switched account, with nobody's ids.
func startAsNobody(t *testing.T, s *ftpsd, keys string, owned ...string) (uid, gid int) {
	t.Helper()
	uid, gid = nobody(t)
	setServerKeys(t, s.cfgPath, `run_as = "nobody"`+keys)
	openUp(t, s.dir)
	for _, p := range append([]string{s.cfgPath}, owned...) {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	s.start()
	s.waitLog("switched account", 5*time.Second)
	return uid, gid
}

// openUp lets an unprivileged account reach dir: it and its parent (the
// per-test temp directory) are made traversable.
func openUp(t *testing.T, dir string) {
	t.Helper()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func wantOwner(t *testing.T, path string, uid, gid int, mode os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != uid || int(st.Gid) != gid || fi.Mode().Perm() != mode {
		t.Errorf("%s: owner %d:%d mode %04o, want %d:%d %04o", filepath.Base(path), st.Uid, st.Gid, fi.Mode().Perm(), uid, gid, mode)
	}
}

// TestRunAs: started as root with run_as, ftpsd ends up with the account's
// uid, gid and groups on every thread and only CAP_NET_ADMIN; pinholes,
// uploads and SIGHUP reload keep working; files and directories made over
// FTP belong to the account with the configured umask, per user.
func TestRunAs(t *testing.T) {
	ns := newNS(t)
	dir := t.TempDir()
	s := &ftpsd{t: t, ns: ns, dir: dir, cfgPath: writeConfig(t, dir, serverOpts{})}
	uid, gid := startAsNobody(t, s, "\n"+`umask = "027"`, s.root("alice"), s.root("reader"))

	pid := s.cmd.Process.Pid
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) < 2 {
		t.Fatalf("threads of ftpsd: %v %v", tasks, err)
	}
	ids := fmt.Sprintf("%d %d %d %d", uid, uid, uid, uid)
	gids := fmt.Sprintf("%d %d %d %d", gid, gid, gid, gid)
	const netAdmin = "0000000000001000" // 1 << CAP_NET_ADMIN (12)
	for _, path := range append([]string{fmt.Sprintf("/proc/%d/status", pid)}, tasks...) {
		st := procStatus(t, path)
		want := map[string]string{"Uid": ids, "Gid": gids, "Groups": strconv.Itoa(gid),
			"CapEff": netAdmin, "CapPrm": netAdmin, "CapInh": "0000000000000000",
			"CapAmb": "0000000000000000", "CapBnd": netAdmin}
		for k, v := range want {
			if st[k] != v {
				t.Errorf("%s: %s = %q, want %q", path, k, st[k], v)
			}
		}
	}

	// A real client uploads through a pinhole, creating directories.
	src := filepath.Join(dir, "up.bin")
	randomFile(t, src, 100<<10)
	url := fmt.Sprintf("ftp://%s:%d/", srvIP4, ctlPort)
	s.mustRun(30*time.Second, "curl", "--silent", "--show-error", "--ssl-reqd", "--insecure", "--ftp-create-dirs",
		"--user", "alice:"+testUsers["alice"], "-T", src, url+"d1/d2/up.bin")
	wantOwner(t, filepath.Join(s.root("alice"), "d1"), uid, gid, 0o750)
	wantOwner(t, filepath.Join(s.root("alice"), "d1/d2"), uid, gid, 0o750)
	wantOwner(t, filepath.Join(s.root("alice"), "d1/d2/up.bin"), uid, gid, 0o640)
	// Listings name the real owner and group, not ftpserverlib's "ftp ftp".
	grp, err := user.LookupGroupId(strconv.Itoa(gid))
	if err != nil {
		t.Fatal(err)
	}
	listing := s.mustRun(30*time.Second, "curl", "--silent", "--show-error", "--ssl-reqd", "--insecure",
		"--user", "alice:"+testUsers["alice"], url+"d1/d2/")
	if !strings.Contains(listing, " nobody "+grp.Name+" ") || !strings.Contains(listing, "up.bin") || strings.Contains(listing, " ftp ftp ") {
		t.Fatalf("LIST does not show the owner nobody:%s:\n%s", grp.Name, listing)
	}

	// Reload, now as nobody, gives alice her own umask for new sessions.
	setUserKeys(t, s.cfgPath, "alice", `umask = "002"`)
	s.cmd.Process.Signal(syscall.SIGHUP)
	s.waitLog("reloaded", 5*time.Second)
	s.mustRun(30*time.Second, "curl", "--silent", "--show-error", "--ssl-reqd", "--insecure", "--ftp-create-dirs",
		"--user", "alice:"+testUsers["alice"], "-T", src, url+"e1/up.bin")
	wantOwner(t, filepath.Join(s.root("alice"), "e1"), uid, gid, 0o775)
	wantOwner(t, filepath.Join(s.root("alice"), "e1/up.bin"), uid, gid, 0o664)
	c := s.client(cliA4, srvIP4, "alice")
	if _, err := c.Retr("RETR e1/up.bin"); err != nil {
		t.Fatalf("download after reload: %v", err)
	}
	// The table restore works unprivileged too (CAP_NET_ADMIN is kept):
	// a reply held across a flush of the ruleset still gets its data.
	port, err := c.EPSV()
	if err != nil {
		t.Fatal(err)
	}
	s.ns.Run(t, "nft", "flush", "ruleset")
	s.waitRestored(1, cliA4, port)
	data, err := c.DialData(port)
	if err != nil {
		t.Fatalf("data connection after a restore as nobody: %v", err)
	}
	if _, err := c.Expect(150, "RETR e1/up.bin"); err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, data)
	data.Close()
	if rep, err := c.Read(); err != nil || rep.Code != 226 {
		t.Fatalf("after the transfer: %v %v", rep, err)
	}
	s.stop()
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit %d after SIGTERM\n%s", code, s.log.String())
	}
}
