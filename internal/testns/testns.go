// Package testns gives each test its own network namespace, so tests can
// change nftables rules and bind to loopback addresses without touching the
// host's ruleset or colliding with other tests.
package testns

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// prefix marks namespaces made by this package, so CleanupStale never deletes
// anything it did not create.
const prefix = "ftpsd-test-"

// netnsDir is where `ip netns` bind-mounts named namespaces.
const netnsDir = "/run/netns"

var seq atomic.Uint64

// NS is a network namespace made for one test.
type NS struct {
	// Name is the `ip netns` name, usable with `ip netns exec` and `ip -n`.
	Name string
	fd   int
}

// New creates a namespace with lo up and deletes it when t ends. It fails
// the test (never skips) when it cannot, so CI notices a missing privilege.
func New(t testing.TB) *NS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("testns: network namespace tests must run as root (euid %d); run `sudo go test ...`", os.Geteuid())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("testns: the iproute2 `ip` command is required: %v", err)
	}
	name := fmt.Sprintf("%s%d-%d", prefix, os.Getpid(), seq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("testns: ip netns add %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	ns := &NS{Name: name, fd: -1}
	// Registered before anything else can fail, so a half-made namespace is
	// still removed.
	t.Cleanup(func() {
		if ns.fd >= 0 {
			_ = unix.Close(ns.fd)
			ns.fd = -1
		}
		if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
			t.Errorf("testns: ip netns delete %s: %v: %s", name, err, strings.TrimSpace(string(out)))
		}
	})
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("testns: bring up lo in %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	fd, err := unix.Open(filepath.Join(netnsDir, name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("testns: open %s: %v", filepath.Join(netnsDir, name), err)
	}
	ns.fd = fd
	return ns
}

// Command returns a command that runs inside the namespace (via `ip netns
// exec`), for tools such as nft, ss or ping.
func (ns *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Run runs a command inside the namespace and returns its combined output;
// a failure fails the test with that output, since callers only use it for
// steps that must work.
func (ns *NS) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := ns.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("testns: %s %s in %s: %v\n%s", name, strings.Join(args, " "), ns.Name, err, out)
	}
	return string(out)
}

// Do runs fn on a dedicated OS thread that has joined the namespace. The
// thread stays locked and is thrown away when fn returns, so no other
// goroutine ever runs in the wrong namespace. Sockets made inside fn belong
// to the namespace for their whole life and may be used from any goroutine.
// Goroutines started by fn run on other threads, in the host namespace.
func (ns *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: a goroutine that exits while locked takes its
		// thread with it, which is what discards the namespace switch.
		runtime.LockOSThread()
		defer func() {
			if r := recover(); r != nil {
				errc <- fmt.Errorf("testns: panic in %s: %v\n%s", ns.Name, r, debug.Stack())
			}
		}()
		if err := unix.Setns(ns.fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("testns: setns %s: %w", ns.Name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Listen opens a TCP listener inside the namespace, closed when t ends.
func (ns *NS) Listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("testns: listen on %s in %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// FD returns an open descriptor of the namespace (for
// nftables.WithNetNSFd); it is closed when the test ends.
func (ns *NS) FD() int { return ns.fd }

// CleanupStale deletes ftpsd-test-* namespaces left by test processes that
// died before their cleanup ran (a killed `go test`). Namespaces of live
// processes are left alone, so parallel test binaries do not disturb each
// other. Call it from TestMain.
func CleanupStale() {
	entries, err := os.ReadDir(netnsDir)
	if err != nil {
		return // no namespaces at all
	}
	for _, e := range entries {
		pid, ok := ownerPID(e.Name())
		if !ok || pid == os.Getpid() || alive(pid) {
			continue
		}
		if out, err := exec.Command("ip", "netns", "delete", e.Name()).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "testns: delete stale namespace %s: %v: %s\n", e.Name(), err, strings.TrimSpace(string(out)))
		}
	}
}

// ownerPID extracts <pid> from ftpsd-test-<pid>-<n>.
func ownerPID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return 0, false
	}
	pidText, n, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	if _, err := strconv.ParseUint(n, 10, 64); err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

// alive reports whether a process exists; EPERM still means it exists.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
