package sdnotify

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 1024)
	n, err := c.Read(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(b[:n])
}

func TestNoSocketIsSilent(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n, err := New()
	if err != nil || n != nil {
		t.Fatalf("New without NOTIFY_SOCKET = %v, %v", n, err)
	}
	if err := n.Ready("x"); err != nil {
		t.Fatal(err)
	}
	n.Watchdog(context.Background(), nil) // returns at once
	n.Close()
}

func TestPathAndAbstractSockets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	abstract := "@ftpsd-sdnotify-test-" + strconv.Itoa(os.Getpid())
	for _, name := range []string{path, abstract} {
		srv := listen(t, name)
		t.Setenv("NOTIFY_SOCKET", name)
		t.Setenv("WATCHDOG_USEC", "")
		n, err := New()
		if err != nil {
			t.Fatal(err)
		}
		n.Ready("up")
		if m := recv(t, srv); m != "READY=1\nSTATUS=up\n" {
			t.Errorf("%s: %q", name, m)
		}
		n.Reloading()
		if m := recv(t, srv); !strings.HasPrefix(m, "RELOADING=1\nMONOTONIC_USEC=") {
			t.Errorf("%s: %q", name, m)
		}
		n.Stopping()
		if m := recv(t, srv); m != "STOPPING=1\n" {
			t.Errorf("%s: %q", name, m)
		}
		n.Close()
	}
}

func TestRelativeSocketRefused(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "relative/path")
	if _, err := New(); err == nil {
		t.Fatal("relative NOTIFY_SOCKET accepted")
	}
}

func TestWatchdog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	srv := listen(t, path)
	t.Setenv("NOTIFY_SOCKET", path)
	// Meant for another process: no pings.
	t.Setenv("WATCHDOG_USEC", "20000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()+1))
	if n, _ := New(); n.watchdog != 0 {
		t.Fatalf("watchdog for another pid armed: %v", n.watchdog)
	}
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	n, err := New()
	if err != nil || n.watchdog != 20*time.Millisecond {
		t.Fatalf("watchdog %v, %v", n.watchdog, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Watchdog(ctx, nil); close(done) }()
	for range 3 {
		if m := recv(t, srv); m != "WATCHDOG=1\n" {
			t.Fatalf("%q", m)
		}
	}
	cancel()
	<-done
	drain(srv) // pings sent before the cancel
	// A server that says it is stuck stops pinging.
	ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	n.Watchdog(ctx, func() bool { return false })
	srv.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := srv.Read(make([]byte, 64)); err == nil {
		t.Fatal("watchdog pinged although alive said no")
	}
}

func drain(c *net.UnixConn) {
	b := make([]byte, 64)
	for {
		c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if _, err := c.Read(b); err != nil {
			return
		}
	}
}
