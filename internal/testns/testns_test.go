package testns

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	CleanupStale()
	os.Exit(m.Run())
}

// A listener made in the namespace must be invisible from the host: the
// same port is still free on the host's loopback, and a dial from inside
// the namespace reaches the namespace's listener.
func TestIsolation(t *testing.T) {
	ns := New(t)

	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatalf("listen in ns: %v", err)
	}
	defer ln.Close()
	addr := ln.Addr().(*net.TCPAddr)

	// Binding the same address on the host only works if the namespace's
	// socket lives elsewhere.
	hostLn, err := net.Listen("tcp", addr.String())
	if err != nil {
		t.Fatalf("listen on host at %s (should be free, the ns listener is elsewhere): %v", addr, err)
	}
	hostLn.Close()

	// Nothing listens there on the host any more, so a host dial fails.
	if c, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
		c.Close()
		t.Fatalf("dial %s from host reached a listener; want refused", addr)
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s from host: %v; want connection refused", addr, err)
	}

	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- err
			return
		}
		defer c.Close()
		_, err = io.WriteString(c, "hello")
		accepted <- err
	}()

	var conn net.Conn
	if err := ns.Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp", addr.String(), time.Second)
		return err
	}); err != nil {
		t.Fatalf("dial %s inside ns: %v", addr, err)
	}
	defer conn.Close()
	// The socket was made in the ns but is read from this goroutine.
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	b, err := io.ReadAll(conn)
	if err != nil || string(b) != "hello" {
		t.Fatalf("read from ns conn = %q, %v; want hello", b, err)
	}
	if err := <-accepted; err != nil {
		t.Fatalf("accept in ns: %v", err)
	}
}

// The namespace has only lo, and lo is up, so loopback tests work at once.
func TestLoopbackUp(t *testing.T) {
	ns := New(t)
	out := ns.Run(t, "ip", "-o", "link", "show")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "lo:") || !strings.Contains(lines[0], "UP") {
		t.Fatalf("links in ns:\n%s\nwant only lo, UP", out)
	}
	if ns.FD() <= 0 {
		t.Fatalf("FD() = %d", ns.FD())
	}
}

// Do must leave the calling goroutine's thread (and the process) in the host
// namespace, and report fn's error and panics.
func TestDoDoesNotLeak(t *testing.T) {
	ns := New(t)
	hostNS, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	var inside string
	if err := ns.Do(func() error {
		var err error
		inside, err = os.Readlink("/proc/thread-self/ns/net")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if inside == hostNS {
		t.Fatalf("Do ran in the host namespace %s", inside)
	}
	// Many goroutines later, none of them may have inherited the ns.
	for range 50 {
		done := make(chan string)
		go func() {
			s, _ := os.Readlink("/proc/thread-self/ns/net")
			done <- s
		}()
		if got := <-done; got != hostNS {
			t.Fatalf("a goroutine ran in %s after Do; want host %s", got, hostNS)
		}
	}
	sentinel := errors.New("boom")
	if err := ns.Do(func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Fatalf("Do error = %v; want %v", err, sentinel)
	}
	if err := ns.Do(func() error { panic("oops") }); err == nil || !strings.Contains(err.Error(), "oops") {
		t.Fatalf("Do after panic = %v; want error mentioning the panic", err)
	}
}

// The namespace and its fd are gone after the test that made it.
func TestCleanup(t *testing.T) {
	var name string
	var fd int
	t.Run("inner", func(t *testing.T) {
		ns := New(t)
		name, fd = ns.Name, ns.FD()
	})
	if _, err := os.Stat(filepath.Join(netnsDir, name)); !os.IsNotExist(err) {
		t.Fatalf("%s still exists after its test: %v", name, err)
	}
	// The number may have been reused by then; only a namespace there is
	// a leak.
	if l, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd)); err == nil && strings.HasPrefix(l, "net:") {
		t.Fatalf("fd %d still open after cleanup: %s", fd, l)
	}
}

func TestOwnerPID(t *testing.T) {
	for name, want := range map[string]int{
		"ftpsd-test-123-4":   123,
		"ftpsd-test-123":     0,
		"ftpsd-test-x-1":     0,
		"other-123-4":        0,
		"ftpsd-test-123-4-5": 0,
	} {
		got, ok := ownerPID(name)
		if (want != 0) != ok || got != want {
			t.Errorf("ownerPID(%q) = %d, %v; want %d", name, got, ok, want)
		}
	}
}

// A namespace whose owner is dead is removed; ours is kept.
func TestCleanupStale(t *testing.T) {
	mine := New(t)
	// A pid that cannot exist (above pid_max's hard limit of 2^22).
	stale := prefix + "999999999-1"
	runHost(t, "ip", "netns", "add", stale)
	t.Cleanup(func() { _ = runHostErr("ip", "netns", "delete", stale) })
	CleanupStale()
	if _, err := os.Stat(filepath.Join(netnsDir, stale)); !os.IsNotExist(err) {
		t.Fatalf("stale namespace %s survived CleanupStale", stale)
	}
	if _, err := os.Stat(filepath.Join(netnsDir, mine.Name)); err != nil {
		t.Fatalf("CleanupStale removed a live namespace %s: %v", mine.Name, err)
	}
}
