package nft

// One table, one owner. Two ftpsd processes managing the same table would
// each re-create it and empty the other's pinholes, and with self-healing
// they would keep replacing each other's table for ever. So a process owns
// a table before it touches it, by binding an abstract unix socket named
// after the table. Abstract sockets belong to the network namespace, as the
// table does, and the kernel frees them when the process dies however it
// dies: no stale lock files, no PID reuse. The socket also answers
// `ftpsd firewall status` with the owner's restore counts.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// OwnerStatus is what a table's owner reports about itself.
type OwnerStatus struct {
	PID      int       `json:"pid"`
	Since    time.Time `json:"since"`
	Restores Restores  `json:"restores"`
}

// OwnedError is returned by Claim when another process owns the table.
type OwnedError struct {
	Table string
	// PID is the owner's process ID as the kernel reports it (0 if the
	// owner is in a PID namespace this process cannot see into).
	PID int
}

func (e *OwnedError) Error() string {
	who := "another process"
	if e.PID > 0 {
		who = fmt.Sprintf("process %d", e.PID)
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", e.PID)); err == nil {
			who = fmt.Sprintf("%s (pid %d)", strings.TrimRight(string(comm), "\r\n"), e.PID)
		}
	}
	return fmt.Sprintf("table inet %s is managed by %s in this network namespace; "+
		"stop it first, or give this server its own [firewall] table and passive ports", e.Table, who)
}

// Claim is this process's ownership of one table in its network namespace.
// Release it (or exit) to let another process take the table.
type Claim struct {
	table string
	ln    *net.UnixListener
	since time.Time

	mu       sync.Mutex
	restores func() Restores
	wg       sync.WaitGroup
}

// socketName is the abstract socket (leading '@') that stands for the table.
func socketName(table string) string { return "@ftpsd/nftables/inet/" + table }

// ClaimTable takes ownership of table in the current network namespace, or
// returns an *OwnedError naming the process that has it.
func ClaimTable(table string) (*Claim, error) {
	if table == "" {
		table = DefaultTable
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: socketName(table), Net: "unix"})
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			pid, _ := ownerPID(table)
			return nil, &OwnedError{Table: table, PID: pid}
		}
		return nil, fmt.Errorf("claim table inet %s: %w", table, err)
	}
	c := &Claim{table: table, ln: ln, since: time.Now()}
	c.wg.Add(1)
	go c.serve()
	return c, nil
}

// Report makes the claim answer status queries with restores' counts.
func (c *Claim) Report(restores func() Restores) {
	c.mu.Lock()
	c.restores = restores
	c.mu.Unlock()
}

// Release gives up ownership.
func (c *Claim) Release() {
	c.ln.Close()
	c.wg.Wait()
}

// serve answers each connection with one JSON status and closes it. The
// socket is reachable by any local user of the namespace, so it only ever
// says what `ftpsd firewall status` shows, and reads nothing.
func (c *Claim) serve() {
	defer c.wg.Done()
	for {
		conn, err := c.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		st := OwnerStatus{PID: os.Getpid(), Since: c.since}
		c.mu.Lock()
		if c.restores != nil {
			st.Restores = c.restores()
		}
		c.mu.Unlock()
		conn.SetWriteDeadline(time.Now().Add(time.Second))
		_ = json.NewEncoder(conn).Encode(st)
		conn.Close()
	}
}

// QueryOwner asks the owner of table in the current network namespace for
// its status; it returns nil, nil when nobody owns the table.
func QueryOwner(table string) (*OwnerStatus, error) {
	if table == "" {
		table = DefaultTable
	}
	conn, err := net.DialTimeout("unix", socketName(table), time.Second)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return nil, nil
		}
		return nil, fmt.Errorf("ask the owner of table inet %s: %w", table, err)
	}
	defer conn.Close()
	pid := peerPID(conn.(*net.UnixConn))
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	var st OwnerStatus
	if err := json.NewDecoder(conn).Decode(&st); err != nil {
		// Owned all the same (a wedged owner still holds its socket).
		return &OwnerStatus{PID: pid}, fmt.Errorf("table inet %s is owned by pid %d, which does not answer: %w", table, pid, err)
	}
	// The kernel's word for the PID, which is in this process's PID
	// namespace, over the owner's own.
	if pid > 0 {
		st.PID = pid
	}
	return &st, nil
}

// ownerPID is the PID of the process holding table's socket.
func ownerPID(table string) (int, error) {
	conn, err := net.DialTimeout("unix", socketName(table), time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	return peerPID(conn.(*net.UnixConn)), nil
}

// peerPID reads SO_PEERCRED: for a connected stream socket, the process
// that called listen on the other end.
func peerPID(c *net.UnixConn) int {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	pid := 0
	_ = raw.Control(func(fd uintptr) {
		if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			pid = int(cred.Pid)
		}
	})
	return pid
}
