package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/internal/ftpclient"
)

func curlArgs(s *ftpsd, user string, extra ...string) []string {
	return append([]string{"--silent", "--show-error", "--ssl-reqd", "--insecure", "--max-time", "30",
		"--user", user + ":" + testUsers[user]}, extra...)
}

// lftpSettings start an lftp script: TLS on both channels, the test
// certificate accepted, and a failure reported at once instead of retried.
const lftpSettings = `set ftp:ssl-force true
set ftp:ssl-protect-data true
set ssl:verify-certificate false
set net:max-retries 1
set net:timeout 10
`

func sum(b []byte) string { h := sha256.Sum256(b); return fmt.Sprintf("%x", h) }

func TestCurlUploadListDownload(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{})
	src := randomFile(t, filepath.Join(s.dir, "local", "payload.bin"), 3<<20)
	base := fmt.Sprintf("ftp://%s:%d/", srvIP4, ctlPort)

	s.mustRun(60*time.Second, "curl", curlArgs(s, "alice", "-T", "local/payload.bin", base+"sub/payload.bin", "--ftp-create-dirs")...)
	onDisk, err := os.ReadFile(filepath.Join(s.root("alice"), "sub", "payload.bin"))
	if err != nil || sum(onDisk) != sum(src) {
		t.Fatalf("uploaded file differs on disk (err %v)", err)
	}
	list := s.mustRun(30*time.Second, "curl", curlArgs(s, "alice", base+"sub/")...)
	if !strings.Contains(list, "payload.bin") || !strings.Contains(list, fmt.Sprint(len(src))) {
		t.Fatalf("LIST does not show the upload:\n%s", list)
	}
	s.mustRun(60*time.Second, "curl", curlArgs(s, "alice", "-o", "local/back.bin", base+"sub/payload.bin")...)
	back, _ := os.ReadFile(filepath.Join(s.dir, "local", "back.bin"))
	if sum(back) != sum(src) {
		t.Fatal("downloaded file differs from the uploaded one")
	}
	// Over IPv6 (EPSV) as well.
	s.mustRun(60*time.Second, "curl", curlArgs(s, "alice", "-o", "local/back6.bin",
		fmt.Sprintf("ftp://[%s]:%d/sub/payload.bin", srvIP6, ctlPort))...)
	back6, _ := os.ReadFile(filepath.Join(s.dir, "local", "back6.bin"))
	if sum(back6) != sum(src) {
		t.Fatal("IPv6 download differs")
	}
	if n := countLines(s.log.String(), "msg=transfer", "direction=upload", "result=ok", fmt.Sprintf("bytes=%d", len(src))); n != 1 {
		t.Errorf("want one logged upload of %d bytes, got %d", len(src), n)
	}
	if strings.Contains(s.log.String(), testUsers["alice"]) {
		t.Error("the log contains a password")
	}
}

func TestImplicitFTPSDownload(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{})
	want := randomFile(t, filepath.Join(s.root("alice"), "implicit.bin"), 1<<20)
	s.mustRun(60*time.Second, "curl", curlArgs(s, "alice", "-o", "got.bin",
		fmt.Sprintf("ftps://%s:%d/implicit.bin", srvIP4, impPort))...)
	got, _ := os.ReadFile(filepath.Join(s.dir, "got.bin"))
	if sum(got) != sum(want) {
		t.Fatal("implicit FTPS download differs")
	}
	// An implicit-port client that never starts TLS is not served in clear text.
	c, err := s.dial(cliA4, 2*time.Second)("tcp", net.JoinHostPort(srvIP4, fmt.Sprint(impPort)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "USER alice\r\n")
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 64)
	n, _ := c.Read(buf)
	if bytes.HasPrefix(buf[:n], []byte("2")) || bytes.HasPrefix(buf[:n], []byte("3")) {
		t.Fatalf("implicit port answered clear text: %q", buf[:n])
	}
}

func TestLftpMirrorRoundTrip(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{})
	tree := lftpMirror(t, s, "")
	if out, err := exec.Command("diff", "-r", tree, filepath.Join(s.root("alice"), "up")).CombinedOutput(); err != nil {
		t.Fatalf("server tree differs:\n%s", out)
	}
}

// lftpMirror makes a small tree in s.dir (nested folders, a tiny file, an
// empty one), has lftp log in as alice, mirror it up to /up and back into
// s.dir/back, then run more (lftp commands, run in s.dir), and requires
// the tree that came back to equal the one sent. It returns the tree.
func lftpMirror(t *testing.T, s *ftpsd, more string) string {
	t.Helper()
	tree := filepath.Join(s.dir, "tree")
	randomFile(t, filepath.Join(tree, "a", "one.bin"), 200_000)
	randomFile(t, filepath.Join(tree, "a", "b", "two.bin"), 1_500_000)
	randomFile(t, filepath.Join(tree, "c", "three.txt"), 10)
	randomFile(t, filepath.Join(tree, "empty-dir", ".keep"), 0)
	script := fmt.Sprintf(lftpSettings+"open -u alice,%s ftp://%s:%d\nmirror -R tree /up\nmirror /up back\n%squit\n",
		testUsers["alice"], srvIP4, ctlPort, more)
	os.WriteFile(filepath.Join(s.dir, "script.lftp"), []byte(script), 0o600)
	s.mustRun(120*time.Second, "lftp", "-f", "script.lftp")
	if out, err := exec.Command("diff", "-r", tree, filepath.Join(s.dir, "back")).CombinedOutput(); err != nil {
		t.Fatalf("trees differ after mirror up and back:\n%s", out)
	}
	return tree
}

func TestFtplibPasvAndEpsv(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{})
	script, _ := filepath.Abs("../../testdata/ftplib_client.py")
	for _, mode := range []string{"pasv", "epsv"} {
		out := s.mustRun(60*time.Second, "python3", script, "roundtrip", srvIP4, fmt.Sprint(ctlPort), "alice", testUsers["alice"], mode)
		if !strings.Contains(out, "roundtrip ok "+mode) {
			t.Fatalf("%s: %s", mode, out)
		}
	}
	out := s.mustRun(60*time.Second, "python3", script, "roundtrip", srvIP6, fmt.Sprint(ctlPort), "alice", testUsers["alice"], "epsv")
	if !strings.Contains(out, "roundtrip ok epsv") {
		t.Fatalf("IPv6: %s", out)
	}
}

func TestClearTextRefused(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{})
	addr := net.JoinHostPort(srvIP4, fmt.Sprint(ctlPort))

	// USER before AUTH TLS: 530, no password prompt.
	c, _, err := ftpclient.Dial(s.dial(cliA4, 2*time.Second), addr, clientTLS, false)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := c.Cmd("USER alice")
	if err != nil || rep.Code != 530 || !strings.Contains(rep.Msg, "TLS") {
		t.Fatalf("clear-text USER: %v %v, want 530 naming TLS", rep, err)
	}
	c.Close()

	// PASS without USER, still clear text: 530.
	c, _, _ = ftpclient.Dial(s.dial(cliA4, 2*time.Second), addr, clientTLS, false)
	if rep, _ := c.Cmd("PASS %s", testUsers["alice"]); rep.Code != 530 {
		t.Fatalf("clear-text PASS: %v, want 530", rep)
	}
	c.Close()

	// curl without TLS fails to log in.
	if out, err := s.run(30*time.Second, "curl", "--silent", "--show-error", "--max-time", "10",
		"--user", "alice:"+testUsers["alice"], "ftp://"+addr+"/"); err == nil {
		t.Fatalf("clear-text curl listed the directory:\n%s", out)
	}

	// TLS control but PROT C data: the transfer is refused, no data flows.
	c = s.client(cliA4, srvIP4, "alice")
	if _, err := c.Expect(200, "PROT C"); err != nil {
		t.Fatal(err)
	}
	c.Private = false
	rep, err = c.Cmd("EPSV")
	if err != nil || rep.Code < 400 || !strings.Contains(rep.Msg, "TLS") {
		t.Fatalf("EPSV with PROT C: %v %v, want a refusal naming TLS", rep, err)
	}
	if strings.Contains(s.log.String(), testUsers["alice"]) {
		t.Error("the log contains a password")
	}
}

func TestLoginFailures(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{})
	addr := net.JoinHostPort(srvIP4, fmt.Sprint(ctlPort))
	try := func(user, pass string) ftpclient.Reply {
		c, _, err := ftpclient.Dial(s.dial(cliA4, 2*time.Second), addr, clientTLS, false)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.AuthTLS(); err != nil {
			t.Fatal(err)
		}
		c.Cmd("USER %s", user)
		rep, _ := c.Cmd("PASS %s", pass)
		return rep
	}
	wrong, unknown := try("alice", "nope"), try("mallory", "nope")
	if wrong.Code != 530 || unknown.Code != 530 {
		t.Fatalf("wrong password %v, unknown user %v: want 530 for both", wrong, unknown)
	}
	if wrong.Msg != unknown.Msg {
		t.Errorf("replies differ, telling users apart: %q vs %q", wrong.Msg, unknown.Msg)
	}
}

func TestPathEscapes(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{})
	os.WriteFile(filepath.Join(s.dir, "outside.txt"), []byte("secret"), 0o644)
	os.WriteFile(filepath.Join(s.root("alice"), "inside.txt"), []byte("ok"), 0o644)
	os.Symlink(filepath.Join(s.dir, "outside.txt"), filepath.Join(s.root("alice"), "link-abs"))
	os.Symlink("../outside.txt", filepath.Join(s.root("alice"), "link-rel"))
	os.Symlink(s.dir, filepath.Join(s.root("alice"), "link-dir"))

	c := s.client(cliA4, srvIP4, "alice")
	for _, p := range []string{"../outside.txt", "/../outside.txt", "../../../../" + s.dir + "/outside.txt",
		s.dir + "/outside.txt", "link-abs", "link-rel", "link-dir/outside.txt", "/etc/passwd"} {
		if b, err := c.Retr("RETR " + p); err == nil || bytes.Contains(b, []byte("secret")) {
			t.Errorf("RETR %s succeeded (%q)", p, b)
		}
	}
	if err := c.Stor("STOR link-dir/planted.txt", []byte("x")); err == nil {
		t.Error("STOR through a symlinked directory succeeded")
	}
	if _, err := os.Stat(filepath.Join(s.dir, "planted.txt")); err == nil {
		t.Error("a file was planted outside the root")
	}
	// CWD .. at the root stays at the root.
	c.Cmd("CWD ../../..")
	if rep, _ := c.Cmd("PWD"); !strings.Contains(rep.Msg, `"/"`) {
		t.Errorf("PWD after CWD ../../.. = %v", rep)
	}
	list, err := c.Retr("NLST")
	if err != nil || !strings.Contains(string(list), "inside.txt") || strings.Contains(string(list), "outside.txt") {
		t.Errorf("NLST at the root after CWD ..: %q %v", list, err)
	}
	if _, err := c.Retr("LIST link-dir"); err == nil {
		t.Error("LIST of a directory outside the root succeeded")
	}
}

// TestKilledUploadKeepsPreviousFile cuts uploads off in the ways a dying
// client does; the previous file must stay byte-for-byte.
func TestKilledUploadKeepsPreviousFile(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{})
	target := filepath.Join(s.root("alice"), "precious.bin")
	previous := randomFile(t, target, 100_000)
	check := func(how string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, _ := os.ReadFile(target)
			entries, _ := os.ReadDir(s.root("alice"))
			if bytes.Equal(got, previous) && len(entries) == 1 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: previous file changed (len %d) or leftovers (%d entries)", how, len(got), len(entries))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// 1. The data connection's TCP stream is cut without TLS close_notify.
	cutUpload(t, s, "precious.bin", bytes.Repeat([]byte("new"), 50_000))
	check("TCP cut without close_notify")

	// 2. The whole client dies: control and data both reset mid-transfer.
	resetUpload(t, s, "precious.bin", bytes.Repeat([]byte("new"), 50_000))
	check("client reset")

	// 3. A real curl killed with SIGKILL in the middle of a rate-limited upload.
	randomFile(t, filepath.Join(s.dir, "big.bin"), 20<<20)
	cmd := s.ns.Command("curl", curlArgs(s, "alice", "--limit-rate", "2M", "-T", "big.bin",
		fmt.Sprintf("ftp://%s:%d/precious.bin", srvIP4, ctlPort))...)
	cmd.Dir = s.dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	cmd.Process.Kill()
	cmd.Wait()
	waitFor(t, 10*time.Second, "three aborted uploads in the log", func() bool {
		return countLines(s.log.String(), "direction=upload", `result="aborted`) == 3
	})
	check("curl killed")

	// And a complete upload still replaces the file.
	c := s.client(cliA4, srvIP4, "alice")
	if err := c.Stor("STOR precious.bin", []byte("replaced")); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(target); string(got) != "replaced" {
		t.Fatalf("complete upload left %q", got)
	}
}

// sendUpload starts an upload of name as alice and sends payload; it
// returns the control client and the data connection's TCP socket (under
// its TLS), for a test to end the upload abnormally.
func sendUpload(t *testing.T, s *ftpsd, name string, payload []byte) (*ftpclient.Client, *net.TCPConn) {
	t.Helper()
	c := s.client(cliA4, srvIP4, "alice")
	data, err := c.Begin("STOR " + name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := data.Write(payload); err != nil {
		t.Fatal(err)
	}
	return c, underTLS(data)
}

// underTLS is the TCP socket under a TLS connection.
func underTLS(c net.Conn) *net.TCPConn {
	return c.(interface{ NetConn() net.Conn }).NetConn().(*net.TCPConn)
}

// cutUpload starts an upload of name as alice, sends payload, and cuts the
// data connection's TCP stream without TLS close_notify; the reply must be
// an error.
func cutUpload(t *testing.T, s *ftpsd, name string, payload []byte) {
	t.Helper()
	c, data := sendUpload(t, s, name, payload)
	data.Close()
	if rep, _ := c.Read(); rep.Code < 400 {
		t.Errorf("cut-off upload answered %v, want an error", rep)
	}
}

// resetUpload starts an upload of name as alice, sends payload, and dies
// as a killed client does: control and data connections both reset.
func resetUpload(t *testing.T, s *ftpsd, name string, payload []byte) {
	t.Helper()
	c, data := sendUpload(t, s, name, payload)
	for _, conn := range []*net.TCPConn{data, underTLS(c.Conn())} {
		conn.SetLinger(0)
		conn.Close()
	}
}

func TestReadOnlyUser(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{})
	os.WriteFile(filepath.Join(s.root("reader"), "doc.txt"), []byte("read me"), 0o644)
	os.Mkdir(filepath.Join(s.root("reader"), "dir"), 0o755)
	c := s.client(cliA4, srvIP4, "reader")
	if b, err := c.Retr("RETR doc.txt"); err != nil || string(b) != "read me" {
		t.Fatalf("read-only user cannot download: %q %v", b, err)
	}
	for _, cmd := range []string{"DELE doc.txt", "MKD new", "RMD dir"} {
		if rep, _ := c.Cmd("%s", cmd); rep.Code != 550 {
			t.Errorf("%s: %v, want 550", cmd, rep)
		}
	}
	// ftpserverlib answers RNFR by checking the source exists; RNTO is refused.
	c.Cmd("RNFR doc.txt")
	if rep, _ := c.Cmd("RNTO moved.txt"); rep.Code != 550 {
		t.Errorf("RNTO: %v, want 550", rep)
	}
	port, err := c.EPSV()
	if err != nil {
		t.Fatal(err)
	}
	data, _ := c.DialData(port)
	defer data.Close()
	if rep, _ := c.Cmd("STOR up.txt"); rep.Code != 550 {
		t.Errorf("STOR: %v, want 550", rep)
	}
	if rep, _ := c.Cmd("APPE doc.txt"); rep.Code != 550 {
		t.Errorf("APPE: %v, want 550", rep)
	}
	// curl sees the refusal too.
	os.WriteFile(filepath.Join(s.dir, "x.txt"), []byte("x"), 0o644)
	if out, err := s.run(30*time.Second, "curl", curlArgs(s, "reader", "-T", "x.txt",
		fmt.Sprintf("ftp://%s:%d/x.txt", srvIP4, ctlPort))...); err == nil || !strings.Contains(out, "550") {
		t.Errorf("curl upload as read-only user: err %v, output %q", err, out)
	}
	entries, _ := os.ReadDir(s.root("reader"))
	if len(entries) != 2 {
		t.Errorf("read-only root changed: %d entries", len(entries))
	}
}

func TestPerIPLimit(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{perIP: 2})
	addr := net.JoinHostPort(srvIP4, fmt.Sprint(ctlPort))
	var held []*ftpclient.Client
	for range 2 {
		c, rep, err := ftpclient.Dial(s.dial(cliA4, 2*time.Second), addr, clientTLS, false)
		if err != nil || rep.Code != 220 {
			t.Fatalf("connection within the limit: %v %v", rep, err)
		}
		held = append(held, c)
	}
	c, rep, err := ftpclient.Dial(s.dial(cliA4, 2*time.Second), addr, clientTLS, false)
	if err != nil || rep.Code != 421 {
		t.Fatalf("third connection from one address: %v %v, want 421", rep, err)
	}
	c.Conn().SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Conn().Read(make([]byte, 1)); err == nil {
		t.Fatal("refused connection was left open")
	}
	// Another address is unaffected.
	c, rep, err = ftpclient.Dial(s.dial(cliB4, 2*time.Second), addr, clientTLS, false)
	if err != nil || rep.Code != 220 {
		t.Fatalf("other address: %v %v", rep, err)
	}
	c.Close()
	// A freed slot can be used again.
	held[0].Quit()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, rep, err = ftpclient.Dial(s.dial(cliA4, 2*time.Second), addr, clientTLS, false)
		if err == nil && rep.Code == 220 {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot not freed after QUIT: %v %v", rep, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestIdleTimeout(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{idleTimeout: "1s"})
	c := s.client(cliA4, srvIP4, "alice")
	c.Timeout = 10 * time.Second
	start := time.Now()
	rep, err := c.Read()
	if err == nil && rep.Code != 421 {
		t.Fatalf("idle client got %v", rep)
	}
	if time.Since(start) > 8*time.Second {
		t.Fatal("idle client not disconnected")
	}
}

// TestCommandsClientsUse walks the commands real clients send.
func TestCommandsClientsUse(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{})
	c := s.client(cliA4, srvIP4, "alice")
	expect := func(code int, cmd string) string {
		t.Helper()
		rep, err := c.Expect(code, "%s", cmd)
		if err != nil {
			t.Fatal(err)
		}
		return rep.Msg
	}
	feat := expect(211, "FEAT")
	for _, f := range []string{"UTF8", "MLST", "SIZE", "MDTM", "REST STREAM", "EPSV", "PBSZ", "PROT"} {
		if !strings.Contains(feat, f) {
			t.Errorf("FEAT lacks %s:\n%s", f, feat)
		}
	}
	expect(200, "OPTS UTF8 ON")
	expect(200, "TYPE I")
	expect(257, "MKD docs")
	expect(250, "CWD docs")
	if pwd := expect(257, "PWD"); !strings.Contains(pwd, `"/docs"`) {
		t.Errorf("PWD = %s", pwd)
	}
	if err := c.Stor("STOR a.txt", []byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	if err := c.Stor("APPE a.txt", []byte("AB")); err != nil {
		t.Fatal(err)
	}
	if sz := expect(213, "SIZE a.txt"); sz != "12" {
		t.Errorf("SIZE = %s", sz)
	}
	if md := expect(213, "MDTM a.txt"); len(md) != 14 {
		t.Errorf("MDTM = %s", md)
	}
	// REST on download.
	expect(350, "REST 8")
	if b, err := c.Retr("RETR a.txt"); err != nil || string(b) != "89AB" {
		t.Errorf("REST 8 + RETR = %q %v", b, err)
	}
	// REST on upload (resume): keeps the first 4 bytes, replaces the rest.
	expect(350, "REST 4")
	if err := c.Stor("STOR a.txt", []byte("xyz")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(s.root("alice"), "docs", "a.txt")); string(b) != "0123xyz" {
		t.Errorf("resumed upload = %q", b)
	}
	// RFC 3659 facts are case-insensitive.
	if ml := strings.ToLower(expect(250, "MLST a.txt")); !strings.Contains(ml, "type=file") || !strings.Contains(ml, "size=7") {
		t.Errorf("MLST = %s", ml)
	}
	if b, err := c.Retr("MLSD"); err != nil || !strings.Contains(string(b), "a.txt") {
		t.Errorf("MLSD = %q %v", b, err)
	}
	if b, err := c.Retr("NLST"); err != nil || strings.TrimSpace(string(b)) != "a.txt" {
		t.Errorf("NLST = %q %v", b, err)
	}
	if b, err := c.Retr("LIST"); err != nil || !strings.Contains(string(b), "a.txt") {
		t.Errorf("LIST = %q %v", b, err)
	}
	expect(350, "RNFR a.txt")
	expect(250, "RNTO b.txt")
	expect(550, "SIZE a.txt")
	expect(250, "CDUP")
	expect(550, "RMD docs") // not empty
	expect(250, "DELE docs/b.txt")
	expect(250, "RMD docs")
	expect(550, "RETR nope.txt")
	// Active mode is off: the server never connects out.
	if rep, _ := c.Cmd("PORT 127,0,0,2,200,10"); rep.Code < 400 {
		t.Errorf("PORT = %v, want refusal", rep)
	}
	c.Quit()
}

// TestStalledDataConnection: a client that opens the data connection and
// then says nothing (not even the TLS handshake) is cut off after
// data_timeout, and the session can transfer again.
func TestStalledDataConnection(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{dataTimeout: "2s", idleTimeout: "30s"})
	os.WriteFile(filepath.Join(s.root("alice"), "f.txt"), []byte("data"), 0o644)
	c := s.client(cliA4, srvIP4, "alice")
	port, err := c.EPSV()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.dial(cliA4, 2*time.Second)("tcp", net.JoinHostPort(srvIP4, fmt.Sprint(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := c.Expect(150, "RETR f.txt"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rep, err := c.Read()
	if err != nil || rep.Code < 400 {
		t.Fatalf("stalled data connection: %v %v, want an error reply", rep, err)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Fatalf("stalled data connection held for %v", d)
	}
	if b, err := c.Retr("RETR f.txt"); err != nil || string(b) != "data" {
		t.Fatalf("transfer after a stalled one: %q %v", b, err)
	}
}

// TestUploadThenClientVanishes: the client sends a whole upload (data and
// TLS close_notify) and drops the control connection at once, before the
// 226. The upload is complete, so it is kept: ftpsd holds the end of the
// control stream back until the upload has been stored.
func TestUploadThenClientVanishes(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{})
	want := bytes.Repeat([]byte("complete"), 1<<20)
	for i := range 5 {
		name := fmt.Sprintf("up%d.bin", i)
		os.WriteFile(filepath.Join(s.root("alice"), name), []byte("previous"), 0o644)
		c := s.client(cliA4, srvIP4, "alice")
		data, err := c.Begin("STOR " + name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := data.Write(want); err != nil {
			t.Fatal(err)
		}
		data.Close() // close_notify
		ctl := underTLS(c.Conn())
		ctl.SetLinger(0)
		ctl.Close()
	}
	waitFor(t, 20*time.Second, "all five uploads to be settled", func() bool {
		return countLines(s.log.String(), "msg=transfer", "direction=upload") == 5
	})
	if n := countLines(s.log.String(), "msg=transfer", "direction=upload", "result=ok"); n != 5 {
		t.Errorf("%d of 5 complete uploads kept", n)
	}
	entries, _ := os.ReadDir(s.root("alice"))
	if len(entries) != 5 {
		t.Errorf("%d entries in the root, want the 5 uploads", len(entries))
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".ftpsd-part-") {
			t.Errorf("part file left behind: %s", e.Name())
			continue
		}
		if got, _ := os.ReadFile(filepath.Join(s.root("alice"), e.Name())); !bytes.Equal(got, want) {
			t.Errorf("%s is not the complete upload: %d of %d bytes", e.Name(), len(got), len(want))
		}
	}
}

// TestBadRestartOffsets: REST -1 or past the end, then STOR, never empties or
// truncates the file; REST with a data connection that never opens neither.
func TestBadRestartOffsets(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{dataTimeout: "1s"})
	target := filepath.Join(s.root("alice"), "keep.bin")
	want := randomFile(t, target, 100_000)
	c := s.client(cliA4, srvIP4, "alice")
	for _, rest := range []string{"-1", "200000"} {
		c.Cmd("REST %s", rest)
		if _, err := c.EPSV(); err != nil {
			t.Fatal(err)
		}
		if rep, _ := c.Cmd("STOR keep.bin"); rep.Code < 400 {
			t.Errorf("REST %s + STOR: %v, want a refusal", rest, rep)
		}
	}
	if _, err := c.Expect(350, "REST 10"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.EPSV(); err != nil {
		t.Fatal(err)
	}
	c.Cmd("STOR keep.bin") // no data connection: 425 after data_timeout
	if got, _ := os.ReadFile(target); !bytes.Equal(got, want) {
		t.Fatalf("file changed to %d bytes", len(got))
	}
}

// TestServerKilledMidUpload: ftpsd dies with SIGKILL during an upload; the
// previous file is intact and the next start removes the hidden part file.
func TestServerKilledMidUpload(t *testing.T) {
	s := startFTPSD(t, newNS(t), serverOpts{})
	target := filepath.Join(s.root("alice"), "big.bin")
	want := randomFile(t, target, 50_000)
	c := s.client(cliA4, srvIP4, "alice")
	data, err := c.Begin("STOR big.bin")
	if err != nil {
		t.Fatal(err)
	}
	data.Write(bytes.Repeat([]byte("n"), 1<<20))
	parts := func() int {
		n := 0
		entries, _ := os.ReadDir(s.root("alice"))
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".ftpsd-part-") {
				n++
			}
		}
		return n
	}
	waitFor(t, 5*time.Second, "the part file to exist", func() bool { return parts() == 1 })
	s.cmd.Process.Kill()
	<-s.done
	data.Close()
	if got, _ := os.ReadFile(target); !bytes.Equal(got, want) {
		t.Fatal("previous file damaged by a killed server")
	}
	s.start()
	waitFor(t, 5*time.Second, "the restart to sweep the part file", func() bool { return parts() == 0 })
	s.waitLog("removed parts of uploads interrupted", 5*time.Second)
}
