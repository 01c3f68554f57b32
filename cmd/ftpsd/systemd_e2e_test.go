package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// notifySocket is a unix datagram socket standing in for systemd's.
type notifySocket struct {
	path string
	msgs chan string
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifySocket{path: path, msgs: make(chan string, 256)}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				close(n.msgs)
				return
			}
			n.msgs <- string(buf[:k])
		}
	}()
	return n
}

// next returns the next datagram that is not a watchdog ping, counting those.
func (n *notifySocket) next(t *testing.T, pings *int) string {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case m, ok := <-n.msgs:
			if !ok {
				t.Fatal("notify socket closed")
			}
			if m == "WATCHDOG=1\n" {
				*pings++
				continue
			}
			return m
		case <-timeout:
			t.Fatal("no notification within 15s")
		}
	}
}

func monotonicUsec(t *testing.T) uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Sec)*1e6 + uint64(ts.Nsec)/1e3
}

// TestSystemdNotify catches ftpsd's sd_notify messages on a real unix
// datagram socket: READY=1 once listening, RELOADING=1 with MONOTONIC_USEC
// then READY=1 around SIGHUP, watchdog pings, STOPPING=1 on SIGTERM.
func TestSystemdNotify(t *testing.T) {
	sock := newNotifySocket(t)
	s := &ftpsd{t: t, ns: newNS(t), dir: t.TempDir()}
	s.cfgPath = writeConfig(t, s.dir, serverOpts{})
	s.env = []string{"NOTIFY_SOCKET=" + sock.path, "WATCHDOG_USEC=200000"}
	s.start()
	pings := 0
	if m := sock.next(t, &pings); !strings.HasPrefix(m, "READY=1\nSTATUS=listening on ") {
		t.Fatalf("first notification %q, want READY=1 with a status", m)
	}
	before := monotonicUsec(t)
	s.cmd.Process.Signal(syscall.SIGHUP)
	m := sock.next(t, &pings)
	lines := strings.Split(strings.TrimSuffix(m, "\n"), "\n")
	if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
		t.Fatalf("reload notification %q", m)
	}
	usec, err := strconv.ParseUint(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil || usec < before || usec > monotonicUsec(t) {
		t.Fatalf("MONOTONIC_USEC %q not between the test's clock readings around the SIGHUP", lines[1])
	}
	if m := sock.next(t, &pings); m != "READY=1\nSTATUS=reloaded\n" {
		t.Fatalf("after reload %q, want READY=1", m)
	}
	// Watchdog pings come every 100ms; wait for a few.
	deadline := time.Now().Add(15 * time.Second)
	for pings < 3 && time.Now().Before(deadline) {
		select {
		case m := <-sock.msgs:
			if m != "WATCHDOG=1\n" {
				t.Fatalf("unexpected %q", m)
			}
			pings++
		case <-time.After(time.Second):
		}
	}
	if pings < 3 {
		t.Fatalf("%d watchdog pings, want at least 3", pings)
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	if m := sock.next(t, &pings); m != "STOPPING=1\n" {
		t.Fatalf("on SIGTERM %q, want STOPPING=1", m)
	}
	<-s.done
}

// TestSystemdUnitVerifies runs `systemd-analyze verify` on the shipped unit.
// The unit names /usr/local/bin/ftpsd, which verify wants to exist: a
// private mount namespace puts the test binary there without touching the
// host.
func TestSystemdUnitVerifies(t *testing.T) {
	unit, err := filepath.Abs("../../packaging/ftpsd.service")
	if err != nil {
		t.Fatal(err)
	}
	script := `mount -t tmpfs tmpfs /usr/local/bin && cp "$1" /usr/local/bin/ftpsd && systemd-analyze verify "$2"`
	out, err := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", ftpsdBin, unit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(unit)
	for _, want := range []string{"Type=notify", "User=ftpsd", "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE", "NoNewPrivileges=yes", "ProtectSystem=strict",
		"ReadWritePaths=", "ExecReload=/bin/kill -HUP $MAINPID"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("unit lacks %q", want)
		}
	}
}

// TestAmbientCapabilitiesPort21 starts ftpsd the systemd way: as an
// unprivileged account with CAP_NET_ADMIN and CAP_NET_BIND_SERVICE as
// ambient capabilities (via setpriv). It serves on port 21 with pinholes,
// and keeps only CAP_NET_ADMIN once listening.
func TestAmbientCapabilitiesPort21(t *testing.T) {
	uid, gid := nobody(t)
	s := &ftpsd{t: t, ns: newNS(t)}
	s.dir = t.TempDir()
	s.cfgPath = writeConfig(t, s.dir, serverOpts{})
	b, _ := os.ReadFile(s.cfgPath)
	cfg := strings.Replace(string(b), fmt.Sprintf("listen = [\"[::]:%d\"]", ctlPort),
		fmt.Sprintf("listen = [\"[::]:%d\", \"0.0.0.0:21\"]", ctlPort), 1)
	if cfg == string(b) {
		t.Fatal("could not add port 21 to the config")
	}
	os.WriteFile(s.cfgPath, []byte(cfg), 0o600)
	openUp(t, s.dir)
	os.Chmod(filepath.Dir(ftpsdBin), 0o755)
	for _, p := range []string{s.dir, s.cfgPath, s.root("alice"), s.root("reader")} {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(s.root("alice"), "hello.txt"), []byte("hello"), 0o644)
	// Without CAP_NET_BIND_SERVICE (the old setcap recipe) it says what is missing.
	out, err := s.run(30*time.Second, "setpriv", "--reuid="+strconv.Itoa(uid), "--regid="+strconv.Itoa(gid), "--clear-groups",
		"--inh-caps=+net_admin", "--ambient-caps=+net_admin", "--", ftpsdBin, "serve", "-c", s.cfgPath)
	if err == nil || !strings.Contains(out, "ports below 1024 need CAP_NET_BIND_SERVICE") {
		t.Fatalf("start without CAP_NET_BIND_SERVICE: %v\n%s", err, out)
	}
	caps := "+net_admin,+net_bind_service"
	s.wrap = []string{"setpriv", "--reuid=" + strconv.Itoa(uid), "--regid=" + strconv.Itoa(gid), "--clear-groups",
		"--inh-caps=" + caps, "--ambient-caps=" + caps, "--"}
	s.start()
	s.waitLog("capabilities limited", 5*time.Second)
	st := procStatus(t, fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	const netAdmin = "0000000000001000"
	for k, v := range map[string]string{"Uid": fmt.Sprintf("%d %d %d %d", uid, uid, uid, uid),
		"CapEff": netAdmin, "CapPrm": netAdmin, "CapInh": "0000000000000000", "CapAmb": "0000000000000000"} {
		if st[k] != v {
			t.Errorf("%s = %q, want %q", k, st[k], v)
		}
	}
	out = s.mustRun(30*time.Second, "curl", "--silent", "--show-error", "--ssl-reqd", "--insecure",
		"--user", "alice:"+testUsers["alice"], fmt.Sprintf("ftp://%s:21/hello.txt", srvIP4))
	if out != "hello" {
		t.Fatalf("download on port 21: %q", out)
	}
	if st := s.status(); !strings.Contains(st, "dropped") {
		t.Fatalf("firewall status:\n%s", st)
	}
}
