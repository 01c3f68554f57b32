package main

// Protocol fidelity: what lftp, rclone, wget, curl, ftplib and scripts expect
// of an FTPS server, beyond moving bytes.

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/internal/ftpclient"
)

// internals are words no reply may contain: system calls, Go packages,
// server paths and hidden upload names.
func checkNoInternals(t *testing.T, s *ftpsd, what string, rep ftpclient.Reply) {
	t.Helper()
	for _, bad := range []string{"openat", "statat", "mkdirat", "renameat", "seek ", "strconv", "driver error",
		"network error", ".ftpsd-part", "parsing time", s.dir} {
		if strings.Contains(rep.Msg, bad) {
			t.Errorf("%s: reply %v exposes %q", what, rep, bad)
		}
	}
}

func TestRawProtocolDetails(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{})
	root := s.root("alice")
	content := []byte("hash me, please\n")
	os.WriteFile(filepath.Join(root, "h.txt"), content, 0o644)
	os.Mkdir(filepath.Join(root, "dir"), 0o755)
	os.WriteFile(filepath.Join(root, "dir", "inner.txt"), []byte("x"), 0o644)
	c := s.client(cliA4, srvIP4, "alice")
	cmd := func(format string, args ...any) ftpclient.Reply {
		t.Helper()
		rep, err := c.Cmd(format, args...)
		if err != nil {
			t.Fatalf("%s: %v", strings.Fields(format)[0], err)
		}
		return rep
	}
	want := func(code int, format string, args ...any) string {
		t.Helper()
		rep := cmd(format, args...)
		if rep.Code != code {
			t.Errorf("%s: %v, want %d", fmt.Sprintf(format, args...), rep, code)
		}
		checkNoInternals(t, s, fmt.Sprintf(format, args...), rep)
		return rep.Msg
	}

	feat := want(211, "FEAT")
	for _, f := range []string{"MLST type*;size*;modify*;perm*;", "HASH SHA-256*;SHA-512;SHA-1;MD5;CRC32;", "EPSV", "UTF8"} {
		if !strings.Contains(feat, f) {
			t.Errorf("FEAT lacks %q:\n%s", f, feat)
		}
	}
	if strings.Contains(feat, "EPRT") || strings.Contains(feat, "PORT") {
		t.Errorf("FEAT advertises active mode, which is off:\n%s", feat)
	}
	if h := want(214, "HELP"); !strings.Contains(h, "STOR") || !strings.Contains(h, "EPSV") {
		t.Errorf("HELP = %s", h)
	}

	// Active mode: 502 (not implemented), not 421 (closing); the
	// connection stays usable.
	want(502, "PORT 127,0,0,2,200,10")
	want(502, "EPRT |1|127.0.0.2|51210|")
	want(200, "NOOP")

	// EPSV with a protocol: only the control connection's own.
	want(522, "EPSV 2")
	if _, err := c.Expect(229, "EPSV 1"); err != nil {
		t.Error(err)
	}
	want(501, "EPSV 7x")

	// STAT <dir>, with and without ls options, and STAT <file>.
	for _, arg := range []string{"dir", "-la dir", "-l dir"} {
		st := want(212, "STAT %s", arg)
		if strings.Contains(st, "%s") || !strings.Contains(st, "inner.txt") {
			t.Errorf("STAT %s = %s", arg, st)
		}
	}
	if st := want(213, "STAT h.txt"); !strings.Contains(st, fmt.Sprintf("%d", len(content))) || !strings.Contains(st, "h.txt") {
		t.Errorf("STAT h.txt = %s", st)
	}
	want(550, "STAT nope")
	if st := want(211, "STAT"); !strings.Contains(st, "Connected to "+srvIP4) {
		t.Errorf("server STAT = %s", st)
	}

	// HASH with the algorithm OPTS HASH selects, relative to the cwd.
	want(250, "CWD /")
	sha := sha256.Sum256(content)
	if h := want(213, "HASH h.txt"); h != fmt.Sprintf("SHA-256 0-%d %x h.txt", len(content), sha) {
		t.Errorf("HASH = %s", h)
	}
	want(200, "OPTS HASH SHA-512")
	if h := want(213, "HASH h.txt"); !strings.Contains(h, fmt.Sprintf("%x", sha512.Sum512(content))) {
		t.Errorf("HASH SHA-512 = %s", h)
	}
	want(200, "OPTS HASH CRC32")
	want(250, "CWD dir")
	if h := want(213, "HASH ../h.txt"); !strings.Contains(h, fmt.Sprintf("%08x", crc32.ChecksumIEEE(content))) {
		t.Errorf("HASH CRC32 = %s", h)
	}
	want(250, "CWD /")
	if cur := want(200, "OPTS HASH"); cur != "CRC32" {
		t.Errorf("OPTS HASH = %s", cur)
	}
	want(504, "OPTS HASH WHIRLPOOL")
	want(550, "HASH nope.txt")
	want(553, "HASH dir")

	// MLST and MLSD carry the facts FEAT announces.
	if ml := want(250, "MLST h.txt"); !strings.Contains(ml, "type=file;size=16;") || !strings.Contains(ml, "perm=adfrw;") ||
		!strings.Contains(ml, "unix.mode=0644;") || !strings.Contains(ml, "unix.owner=") {
		t.Errorf("MLST = %s", ml)
	}
	if b, err := c.Retr("MLSD"); err != nil || !strings.Contains(string(b), "type=dir;") ||
		!strings.Contains(string(b), "perm=cdeflmp;") || !strings.Contains(string(b), "unix.mode=0755;") ||
		!strings.Contains(string(b), "; h.txt\r\n") {
		t.Errorf("MLSD = %q %v", b, err)
	}
	// An empty listing still completes its TLS handshake.
	want(257, "MKD empty")
	if b, err := c.Retr("MLSD empty"); err != nil || len(b) != 0 {
		t.Errorf("MLSD of an empty directory = %q %v", b, err)
	}
	want(250, "RMD empty")
	want(200, "OPTS MLST type;size;")
	if b, err := c.Retr("MLSD"); err != nil || !strings.Contains(string(b), "type=file;size=16; h.txt\r\n") {
		t.Errorf("MLSD after OPTS MLST = %q %v", b, err)
	}

	// SIZE and REST in ASCII mode, as vsftpd.
	want(200, "TYPE A")
	if sz := want(213, "SIZE h.txt"); sz != "16" {
		t.Errorf("SIZE in ASCII mode = %s", sz)
	}
	want(200, "TYPE I")

	// SITE: CHMOD, UMASK and HELP; nothing else.
	want(214, "SITE HELP")
	want(200, "SITE CHMOD 600 h.txt")
	if fi, _ := os.Stat(filepath.Join(root, "h.txt")); fi.Mode().Perm() != 0o600 {
		t.Errorf("SITE CHMOD 600: mode %v", fi.Mode())
	}
	want(550, "SITE CHMOD 4755 h.txt")
	want(550, "SITE CHMOD 755 /")
	if fi, _ := os.Stat(filepath.Join(root, "h.txt")); fi.Mode()&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky) != 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("after SITE CHMOD 4755: mode %v", fi.Mode())
	}
	want(500, "SITE SYMLINK h.txt link")
	if _, err := os.Lstat(filepath.Join(root, "link")); err == nil {
		t.Error("SITE SYMLINK made a link")
	}
	if m := want(200, "SITE UMASK"); !strings.Contains(m, "022") {
		t.Errorf("SITE UMASK = %s", m)
	}
	want(200, "SITE UMASK 077")
	if err := c.Stor("STOR private.txt", []byte("p")); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(root, "private.txt")); fi.Mode().Perm() != 0o600 {
		t.Errorf("upload after SITE UMASK 077: mode %v", fi.Mode())
	}
	want(501, "SITE UMASK 999")

	// Backslash is an ordinary character: no directory, no escape.
	if err := c.Stor(`STOR bs\x.txt`, []byte("b")); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(filepath.Join(root, `bs\x.txt`)); err != nil {
		t.Errorf(`STOR bs\x.txt: %v`, err)
	}
	want(550, `CWD ..\..\..`)
	if pwd := want(257, "PWD"); !strings.Contains(pwd, `"/"`) {
		t.Errorf(`PWD after CWD ..\..\.. = %s`, pwd)
	}

	// Names with control characters or invalid UTF-8 are refused (553)
	// and nothing is created.
	for _, bad := range []string{"a\x01b.txt", "cr\rname.txt", "bad-\xff\xfe.txt", "tab\tname"} {
		port, err := c.EPSV()
		if err != nil {
			t.Fatal(err)
		}
		if rep := cmd("STOR %s", bad); rep.Code != 553 {
			t.Errorf("STOR %q: %v, want 553", bad, rep)
		}
		_ = port
		if rep := cmd("MKD %s", bad); rep.Code != 553 {
			t.Errorf("MKD %q: %v, want 553", bad, rep)
		}
	}
	want(350, "RNFR private.txt")
	want(553, "RNTO new\x02name")

	// REST far past the end, then STOR: refused, and nothing created.
	want(350, "REST 9223372036854775807")
	if _, err := c.EPSV(); err != nil {
		t.Fatal(err)
	}
	if rep := cmd("STOR huge-rest.bin"); rep.Code < 500 {
		t.Errorf("REST 2^63-1 + STOR: %v, want a refusal", rep)
	} else {
		checkNoInternals(t, s, "REST+STOR", rep)
	}
	want(501, "REST notanumber")
	if m := want(501, "MFMT 2026-01-01 h.txt"); strings.Contains(m, "2006") {
		t.Errorf("MFMT with a bad time quotes Go's layout: %s", m)
	}

	// Errors say what happened, not where on the server.
	want(550, "RETR nope.txt")
	want(550, "CWD nope")
	want(550, "DELE nope")
	want(550, "RMD dir")
	want(550, "MKD dir")
	want(550, "SIZE nope")

	// EPSV ALL: 200, then PASV is refused and EPSV still works.
	want(200, "EPSV ALL")
	if rep := cmd("PASV"); rep.Code < 500 {
		t.Errorf("PASV after EPSV ALL: %v", rep)
	}
	if b, err := c.Retr("RETR h.txt"); err != nil || !bytes.Equal(b, content) {
		t.Errorf("EPSV transfer after EPSV ALL: %q %v", b, err)
	}
	c.Quit()

	entries, _ := os.ReadDir(root)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != `bs\x.txt dir h.txt private.txt` {
		t.Errorf("root holds %q", got)
	}

	// IPv6 control connection: EPSV 1 is the wrong protocol.
	c6 := s.client(cliA6, srvIP6, "alice")
	if rep, _ := c6.Cmd("EPSV 1"); rep.Code != 522 {
		t.Errorf("EPSV 1 over IPv6: %v, want 522", rep)
	}
	if _, err := c6.Expect(229, "EPSV 2"); err != nil {
		t.Error(err)
	}
}

// TestLftpChmodAndMLSD: lftp's chmod works, and lftp lists with MLSD.
func TestLftpChmodAndMLSD(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{})
	randomFile(t, filepath.Join(s.root("alice"), "d", "f.bin"), 1000)
	script := fmt.Sprintf(lftpSettings+`open -u alice,%s ftp://%s:%d
chmod 600 d/f.bin
cls -l d/
mirror d back
quit
`, testUsers["alice"], srvIP4, ctlPort)
	os.WriteFile(filepath.Join(s.dir, "script.lftp"), []byte(script), 0o600)
	out := s.mustRun(60*time.Second, "lftp", "-d", "-f", "script.lftp")
	if fi, err := os.Stat(filepath.Join(s.root("alice"), "d", "f.bin")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("lftp chmod 600: %v %v\n%s", fi.Mode(), err, out)
	}
	if !strings.Contains(out, "---> MLSD") {
		t.Errorf("lftp did not use MLSD:\n%s", out)
	}
	if strings.Contains(out, "---> MDTM") {
		t.Errorf("lftp fell back to MDTM per file:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "back", "f.bin")); err != nil {
		t.Errorf("lftp mirror: %v\n%s", err, out)
	}
}

// TestFtplibSizeInASCIIMode: ftplib's nlst() switches to TYPE A; size() after it works.
func TestFtplibSizeInASCIIMode(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{})
	script, _ := filepath.Abs("../../testdata/ftplib_client.py")
	out := s.mustRun(60*time.Second, "python3", script, "asciisize", srvIP4, fmt.Sprint(ctlPort), "alice", testUsers["alice"])
	if !strings.Contains(out, "asciisize ok 18") {
		t.Fatal(out)
	}
}

// TestCurlBackslashName: curl uploads and downloads names with a backslash,
// which stays part of the name.
func TestCurlBackslashName(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{})
	src := randomFile(t, filepath.Join(s.dir, "local", "x.bin"), 5000)
	base := fmt.Sprintf("ftp://%s:%d/", srvIP4, ctlPort)
	s.mustRun(30*time.Second, "curl", curlArgs(s, "alice", "-T", "local/x.bin", base+`bs%5Cx.bin`)...)
	s.mustRun(30*time.Second, "curl", curlArgs(s, "alice", "--ftp-create-dirs", "-T", "local/x.bin", base+`bs/a%5Cb.bin`)...)
	for _, p := range []string{`bs\x.bin`, `bs/a\b.bin`} {
		if got, err := os.ReadFile(filepath.Join(s.root("alice"), p)); err != nil || !bytes.Equal(got, src) {
			t.Errorf("%s on disk: %v", p, err)
		}
	}
	s.mustRun(30*time.Second, "curl", curlArgs(s, "alice", "-o", "local/back.bin", base+`bs/a%5Cb.bin`)...)
	if got, _ := os.ReadFile(filepath.Join(s.dir, "local", "back.bin")); !bytes.Equal(got, src) {
		t.Error(`download of bs/a\b.bin differs`)
	}
}

// TestDiskFull: an upload into a full file system is answered 452, with no
// path in the reply, the previous file intact and no part file left. The
// tmpfs lives in ftpsd's own mount namespace (unshare; the working directory
// is the test's), so the host never sees it and it goes away with ftpsd.
func TestDiskFull(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{prefix: []string{"unshare", "--mount", "--propagation", "private",
		"sh", "-c", `mount -t tmpfs -o size=1m ftpsd-test alice && exec "$@"`, "sh"}})
	// ftpsd's view of alice's root (the host's is the empty directory below the tmpfs).
	view := filepath.Join(fmt.Sprintf("/proc/%d/root", s.cmd.Process.Pid), s.root("alice"))
	c := s.client(cliA4, srvIP4, "alice")
	old := bytes.Repeat([]byte("previous "), 40_000) // 360 kB
	if err := c.Stor("STOR keep.bin", old); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(view, "keep.bin")); err != nil || !bytes.Equal(got, old) {
		t.Fatalf("ftpsd's view of the tmpfs (%s): %v", view, err)
	}
	if _, err := os.Stat(filepath.Join(s.root("alice"), "keep.bin")); err == nil {
		t.Fatal("the tmpfs is visible outside ftpsd's mount namespace")
	}

	data, err := c.Begin("STOR keep.bin")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		data.Write(bytes.Repeat([]byte("too much "), 300_000)) // 2.7 MB, fails once the server gives up
		data.Close()
	}()
	rep, err := c.Read()
	if err != nil {
		t.Fatal(err)
	}
	if rep.Code != 452 {
		t.Errorf("upload into a full disk: %v, want 452", rep)
	}
	checkNoInternals(t, s, "disk full", rep)
	if strings.Contains(rep.Msg, "no space left") {
		t.Errorf("reply quotes the system error: %v", rep)
	}
	if got, err := c.Retr("RETR keep.bin"); err != nil || !bytes.Equal(got, old) {
		t.Errorf("previous file after a disk-full upload: %d bytes, %v", len(got), err)
	}
	entries, _ := os.ReadDir(view)
	for _, e := range entries {
		if e.Name() != "keep.bin" {
			t.Errorf("left behind: %s", e.Name())
		}
	}
	// A resumed upload (written in place) that runs out of space: 452 too.
	if _, err := c.Expect(350, "REST %d", len(old)); err != nil {
		t.Fatal(err)
	}
	data, err = c.Begin("STOR keep.bin")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		data.Write(bytes.Repeat([]byte("too much "), 300_000))
		data.Close()
	}()
	if rep, err := c.Read(); err != nil || rep.Code != 452 {
		t.Errorf("resumed upload into a full disk: %v %v, want 452", rep, err)
	}
}

// TestRcloneExplicitFTPS: rclone copy, check and lsf over explicit FTPS.
// rclone (Debian's 1.60) does not resume the control connection's own TLS
// session on its data connections, so its user opts out of the binding,
// as README tells rclone users to.
func TestRcloneExplicitFTPS(t *testing.T) {
	dir := t.TempDir()
	s := &ftpsd{t: t, ns: newNS(t), dir: dir, cfgPath: writeConfig(t, dir, serverOpts{})}
	setUserKeys(t, s.cfgPath, "alice", "require_session_reuse = false")
	s.start()
	local := filepath.Join(s.dir, "tree")
	randomFile(t, filepath.Join(local, "a", "one.bin"), 300_000)
	randomFile(t, filepath.Join(local, "a", "b", "two.bin"), 1_200_000)
	randomFile(t, filepath.Join(local, `odd name\with backslash.txt`), 10)
	obscured := strings.TrimSpace(s.mustRun(30*time.Second, "rclone", "obscure", testUsers["alice"]))
	rclone := func(args ...string) string {
		t.Helper()
		return s.mustRun(120*time.Second, "rclone", append([]string{"--config", filepath.Join(s.dir, "rclone.conf"),
			"--ftp-host", srvIP4, "--ftp-port", fmt.Sprint(ctlPort), "--ftp-user", "alice", "--ftp-pass", obscured,
			"--ftp-explicit-tls", "--ftp-no-check-certificate", "--low-level-retries", "1", "--retries", "1",
			"--contimeout", "10s", "--timeout", "30s", "-vv"}, args...)...)
	}
	rclone("copy", "tree", ":ftp:up")
	rclone("check", "tree", ":ftp:up")
	lsf := rclone("lsf", "-R", "--format", "ps", ":ftp:up")
	for _, want := range []string{"a/one.bin;300000", "a/b/two.bin;1200000", `odd name\with backslash.txt;10`} {
		if !strings.Contains(lsf, want) {
			t.Errorf("rclone lsf lacks %q:\n%s", want, lsf)
		}
	}
	if got, err := os.ReadFile(filepath.Join(s.root("alice"), "up", "a", "b", "two.bin")); err != nil || len(got) != 1_200_000 {
		t.Errorf("rclone copy: %v", err)
	}
	// check notices a difference.
	os.WriteFile(filepath.Join(s.root("alice"), "up", "a", "one.bin"), []byte("changed"), 0o644)
	if out, err := s.run(60*time.Second, "rclone", "--config", filepath.Join(s.dir, "rclone.conf"),
		"--ftp-host", srvIP4, "--ftp-port", fmt.Sprint(ctlPort), "--ftp-user", "alice", "--ftp-pass", obscured,
		"--ftp-explicit-tls", "--ftp-no-check-certificate", "check", "tree", ":ftp:up"); err == nil {
		t.Errorf("rclone check missed a changed file:\n%s", out)
	}
}

// TestWgetRecursiveImplicitFTPS: wget -r over implicit FTPS.
func TestWgetRecursiveImplicitFTPS(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{})
	src := filepath.Join(s.root("alice"), "pub")
	one := randomFile(t, filepath.Join(src, "one.bin"), 400_000)
	two := randomFile(t, filepath.Join(src, "sub", "two.txt"), 1000)
	s.mustRun(120*time.Second, "wget", "--quiet", "--recursive", "--no-host-directories", "--ftps-implicit",
		"--no-check-certificate", "--tries", "1", "--timeout", "30", "--directory-prefix", "got",
		"--user", "alice", "--password", testUsers["alice"],
		fmt.Sprintf("ftps://%s:%d/pub/", srvIP4, impPort))
	for p, want := range map[string][]byte{"pub/one.bin": one, "pub/sub/two.txt": two} {
		if got, err := os.ReadFile(filepath.Join(s.dir, "got", p)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("wget -r: %s differs (%v)", p, err)
		}
	}
}

// TestControlLayerHostile: what the control layer ftpsd adds must not open
// new holes: commands smuggled behind AUTH TLS, names that would forge reply
// lines, paths and symlinks leading out of the root.
func TestControlLayerHostile(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{})
	root := s.root("alice")
	os.WriteFile(filepath.Join(s.dir, "outside.txt"), []byte("secret"), 0o644)
	os.Symlink(filepath.Join(s.dir, "outside.txt"), filepath.Join(root, "link-out"))
	os.WriteFile(filepath.Join(root, "evil\r\n226 forged"), []byte("x"), 0o644)
	addr := net.JoinHostPort(srvIP4, fmt.Sprint(ctlPort))

	// Clear-text commands pipelined behind AUTH TLS (CVE-2011-0411) are not
	// run after the handshake: the connection is dropped.
	raw, err := s.dial(cliA4, 2*time.Second)("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 512)
	raw.Read(buf) // 220
	raw.Write([]byte("AUTH TLS\r\nUSER alice\r\n"))
	got, _ := io.ReadAll(raw)
	if !strings.HasPrefix(string(got), "234 ") || strings.Contains(string(got), "331") {
		t.Errorf("pipelined AUTH TLS: %q, want 234 and then the end", got)
	}
	raw.Close()

	c := s.client(cliA4, srvIP4, "alice")
	st, err := c.Expect(212, "STAT /")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.Msg, "evil??226 forged") {
		t.Errorf("STAT with a CR LF name: %q", st.Msg)
	}
	if rep, _ := c.Cmd("NOOP"); rep.Code != 200 {
		t.Errorf("after STAT, the next reply is %v: STAT's reply was forged", rep)
	}
	for _, cmd := range []string{"HASH link-out", "HASH ../../../../" + s.dir + "/outside.txt", "MLST link-out",
		"STAT link-out", "SITE CHMOD 777 link-out"} {
		rep, err := c.Cmd("%s", cmd)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Code < 500 || strings.Contains(rep.Msg, "secret") {
			t.Errorf("%s: %v, want a refusal", cmd, rep)
		}
		checkNoInternals(t, s, cmd, rep)
	}
	if fi, _ := os.Stat(filepath.Join(s.dir, "outside.txt")); fi.Mode().Perm() != 0o644 {
		t.Errorf("SITE CHMOD through a symlink changed a file outside the root: %v", fi.Mode())
	}
	// A long line is refused as before (ftpserverlib's 4096-byte limit).
	c.Conn().Write([]byte("NOOP " + strings.Repeat("x", 5000) + "\r\n"))
	if rep, err := c.Read(); err == nil && rep.Code == 200 {
		t.Errorf("overlong line accepted: %v", rep)
	}
}
