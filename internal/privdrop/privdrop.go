// Package privdrop switches a running ftpsd to an unprivileged account and
// trims its capabilities to the few it still needs, on every thread.
//
// Linux keeps credentials and capabilities per thread, while a Go program
// runs on many threads it does not choose. The uid, gid and groups calls of
// package syscall change all threads (Go ≥ 1.16); capabilities and prctl
// flags are changed here through syscall.AllThreadsSyscall, which Go
// supports only in binaries built without cgo (CGO_ENABLED=0).
package privdrop

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Cap is a Linux capability number (unix.CAP_*).
type Cap uint

// Account is a resolved user account.
type Account struct {
	Name     string
	UID, GID int
	Groups   []int // supplementary groups, from the group database
}

// Lookup resolves an account name with its supplementary groups.
func Lookup(name string) (Account, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return Account{}, fmt.Errorf("account %q: %w", name, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return Account{}, fmt.Errorf("account %q: non-numeric uid %q or gid %q", name, u.Uid, u.Gid)
	}
	a := Account{Name: name, UID: uid, GID: gid}
	ids, err := u.GroupIds()
	if err != nil {
		return Account{}, fmt.Errorf("account %q: groups: %w", name, err)
	}
	for _, s := range ids {
		if g, err := strconv.Atoi(s); err == nil {
			a.Groups = append(a.Groups, g)
		}
	}
	if len(a.Groups) == 0 {
		a.Groups = []int{gid}
	}
	return a, nil
}

// ErrCgo explains why a cgo binary cannot drop privileges safely.
var ErrCgo = errors.New("this ftpsd binary was built with cgo, where Go cannot change capabilities on all threads; rebuild it with CGO_ENABLED=0")

// allThreads runs a system call on every thread of the process.
func allThreads(trap, a1, a2, a3 uintptr) error {
	_, _, e := syscall.AllThreadsSyscall(trap, a1, a2, a3)
	if e == syscall.ENOTSUP {
		return ErrCgo
	}
	if e != 0 {
		return e
	}
	return nil
}

func prctl(op, arg uintptr) error { return allThreads(unix.SYS_PRCTL, op, arg, 0) }

// Supported reports whether capabilities can be changed on all threads.
func Supported() bool {
	return prctl(unix.PR_GET_KEEPCAPS, 0) == nil
}

// SwitchTo makes every thread run as acct (uid, gid, groups) with exactly
// keep as permitted and effective capabilities; inheritable, ambient and
// the bounding set are emptied of everything else, so nothing can win the
// rest back, not even through exec. The process must be root.
func SwitchTo(acct Account, keep []Cap) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("switch to %s: only root can change accounts (euid %d)", acct.Name, os.Geteuid())
	}
	if !Supported() {
		return ErrCgo
	}
	// Without KEEPCAPS, leaving uid 0 empties the permitted set.
	if err := prctl(unix.PR_SET_KEEPCAPS, 1); err != nil {
		return fmt.Errorf("keep capabilities across the uid change: %w", err)
	}
	if err := dropBounding(keep); err != nil {
		return err
	}
	if err := syscall.Setgroups(acct.Groups); err != nil {
		return fmt.Errorf("setgroups %v: %w", acct.Groups, err)
	}
	if err := syscall.Setresgid(acct.GID, acct.GID, acct.GID); err != nil {
		return fmt.Errorf("setresgid %d: %w", acct.GID, err)
	}
	if err := syscall.Setresuid(acct.UID, acct.UID, acct.UID); err != nil {
		return fmt.Errorf("setresuid %d: %w", acct.UID, err)
	}
	if err := prctl(unix.PR_SET_KEEPCAPS, 0); err != nil {
		return fmt.Errorf("reset keep capabilities: %w", err)
	}
	if err := Limit(keep); err != nil {
		return err
	}
	return verify(acct.UID, keep)
}

// Limit sets every thread's permitted and effective capabilities to keep
// (which must be a subset of what it has) and clears inheritable and
// ambient ones. It is how a process started unprivileged with ambient
// capabilities sheds those it needed only at start.
func Limit(keep []Cap) error {
	var mask [2]uint32
	for _, c := range keep {
		mask[c/32] |= 1 << (c % 32)
	}
	hdr := &unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := &[2]unix.CapUserData{
		{Effective: mask[0], Permitted: mask[0]},
		{Effective: mask[1], Permitted: mask[1]},
	}
	if err := prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	// Called directly (not through allThreads) so that the pointer
	// conversions sit in the call of a //go:uintptrescapes function.
	_, _, e := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(hdr)), uintptr(unsafe.Pointer(data)), 0)
	runtime.KeepAlive(hdr)
	runtime.KeepAlive(data)
	switch e {
	case 0:
		return nil
	case syscall.ENOTSUP:
		return ErrCgo
	}
	return fmt.Errorf("set capabilities to %s: %w", Names(keep), e)
}

// dropBounding removes every capability but keep from the bounding set.
func dropBounding(keep []Cap) error {
	last := lastCap()
	for c := Cap(0); c <= last; c++ {
		if contains(keep, c) {
			continue
		}
		if err := prctl(unix.PR_CAPBSET_DROP, uintptr(c)); err != nil && !errors.Is(err, syscall.EINVAL) {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	return nil
}

func lastCap() Cap {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 && n < 64 {
			return Cap(n)
		}
	}
	return 40 // CAP_CHECKPOINT_RESTORE, the last one known in 2024
}

func contains(keep []Cap, c Cap) bool {
	for _, k := range keep {
		if k == c {
			return true
		}
	}
	return false
}

// verify reads every thread's status back: a thread left behind with root
// or extra capabilities would defeat the point, so it is an error.
func verify(uid int, keep []Cap) error {
	var want uint64
	for _, c := range keep {
		want |= 1 << c
	}
	tasks, err := filepath.Glob("/proc/self/task/*/status")
	if err != nil || len(tasks) == 0 {
		return fmt.Errorf("verify privileges: cannot read /proc/self/task: %v", err)
	}
	for _, path := range tasks {
		st, err := readStatus(path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // the thread exited meanwhile
			}
			return fmt.Errorf("verify privileges: %w", err)
		}
		if st.uids != [4]int{uid, uid, uid, uid} || st.capEff != want || st.capPrm != want {
			return fmt.Errorf("verify privileges: thread %s has uids %v, CapPrm %016x, CapEff %016x; want uid %d and %016x",
				filepath.Base(filepath.Dir(path)), st.uids, st.capPrm, st.capEff, uid, want)
		}
	}
	return nil
}

type status struct {
	uids           [4]int
	capEff, capPrm uint64
}

func readStatus(path string) (status, error) {
	var st status
	b, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Uid":
			f := strings.Fields(v)
			for i := 0; i < len(f) && i < 4; i++ {
				st.uids[i], _ = strconv.Atoi(f[i])
			}
		case "CapEff":
			st.capEff, _ = strconv.ParseUint(v, 16, 64)
		case "CapPrm":
			st.capPrm, _ = strconv.ParseUint(v, 16, 64)
		}
	}
	return st, nil
}

// Names renders capabilities for logs, e.g. "cap_net_admin".
func Names(caps []Cap) string {
	if len(caps) == 0 {
		return "none"
	}
	names := make([]string, len(caps))
	for i, c := range caps {
		switch c {
		case unix.CAP_NET_ADMIN:
			names[i] = "cap_net_admin"
		case unix.CAP_NET_BIND_SERVICE:
			names[i] = "cap_net_bind_service"
		default:
			names[i] = "cap_" + strconv.Itoa(int(c))
		}
	}
	return strings.Join(names, ",")
}

// Current returns the calling thread's permitted capability mask.
func Current() (uint64, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, fmt.Errorf("capget: %w", err)
	}
	return uint64(data[0].Permitted) | uint64(data[1].Permitted)<<32, nil
}

// Chown gives paths to acct, skipping those that do not exist; used for
// what ftpsd created as root and must still read or write afterwards.
func Chown(acct Account, paths ...string) error {
	for _, p := range paths {
		if p == "" {
			continue
		}
		if err := os.Lchown(p, acct.UID, acct.GID); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("chown %s to %s: %w", p, acct.Name, err)
		}
	}
	return nil
}
