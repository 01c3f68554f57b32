// Package sdnotify speaks systemd's service notification protocol
// (sd_notify(3)): datagrams of NAME=VALUE lines sent to the unix socket
// named by $NOTIFY_SOCKET. It is a few lines of protocol, so it is written
// here rather than pulled in with go-systemd.
package sdnotify

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Notifier sends state changes to systemd. A nil *Notifier, or one made
// without $NOTIFY_SOCKET, does nothing: ftpsd runs the same outside systemd.
type Notifier struct {
	conn     *net.UnixConn
	watchdog time.Duration
}

// New connects to $NOTIFY_SOCKET, if set. Call it before dropping
// privileges: the connected socket keeps working afterwards, whatever the
// socket file's permissions.
func New() (*Notifier, error) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil, nil
	}
	// A leading '@' names an abstract socket; Go's net package reads it so.
	if path[0] != '/' && path[0] != '@' {
		return nil, fmt.Errorf("NOTIFY_SOCKET %q: not an absolute path or abstract socket", path)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("connect to NOTIFY_SOCKET: %w", err)
	}
	return &Notifier{conn: conn, watchdog: watchdogInterval()}, nil
}

// watchdogInterval reads $WATCHDOG_USEC, honouring $WATCHDOG_PID when set
// (the variables may have been meant for another process).
func watchdogInterval() time.Duration {
	usec, err := strconv.ParseUint(os.Getenv("WATCHDOG_USEC"), 10, 63)
	if err != nil || usec == 0 {
		return 0
	}
	if p := os.Getenv("WATCHDOG_PID"); p != "" && p != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(usec) * time.Microsecond
}

// Send sends one notification, e.g. "READY=1".
func (n *Notifier) Send(lines ...string) error {
	if n == nil || n.conn == nil {
		return nil
	}
	if _, err := n.conn.Write([]byte(strings.Join(lines, "\n") + "\n")); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// Ready says the service is up (listening), with a status line.
func (n *Notifier) Ready(status string) error {
	return n.Send("READY=1", "STATUS="+status)
}

// Reloading says a reload started; systemd wants the monotonic clock with it.
func (n *Notifier) Reloading() error {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return fmt.Errorf("sd_notify: clock: %w", err)
	}
	usec := uint64(ts.Sec)*1e6 + uint64(ts.Nsec)/1e3
	return n.Send("RELOADING=1", "MONOTONIC_USEC="+strconv.FormatUint(usec, 10))
}

// Stopping says shutdown has begun.
func (n *Notifier) Stopping() error {
	return n.Send("STOPPING=1")
}

// Watchdog pings systemd at half the interval it asked for until ctx ends;
// it returns at once when no watchdog is configured. alive, if non-nil, is
// asked before each ping, so that a stuck server stops pinging and gets
// restarted.
func (n *Notifier) Watchdog(ctx context.Context, alive func() bool) {
	if n == nil || n.watchdog == 0 {
		return
	}
	t := time.NewTicker(n.watchdog / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if alive == nil || alive() {
				n.Send("WATCHDOG=1")
			}
		}
	}
}

// Close releases the socket.
func (n *Notifier) Close() error {
	if n == nil || n.conn == nil {
		return nil
	}
	return n.conn.Close()
}
