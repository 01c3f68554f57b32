package server

import (
	"bytes"
	"net"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// listConn carries one LIST listing and puts each entry's real owner and
// group where ftpserverlib v0.32.3 writes "ftp ftp" (handle_dirs.go,
// fileStat with fakeUser/fakeGroup, no hook). The upstream change: take
// the names from an optional Owner()/Group() of the os.FileInfo the
// driver's ReadDir returns. Entries are matched by name with that ReadDir,
// as for MLSD (mlsdConn).
type listConn struct {
	net.Conn
	sess    *session
	partial []byte
}

func (l *listConn) Write(p []byte) (int, error) {
	l.partial = append(l.partial, p...)
	var out []byte
	for {
		i := bytes.Index(l.partial, []byte("\r\n"))
		if i < 0 {
			break
		}
		out = append(out, l.entry(string(l.partial[:i]))...)
		out = append(out, "\r\n"...)
		l.partial = l.partial[i+2:]
	}
	// An empty write still matters: over TLS it runs the handshake.
	if len(out) > 0 || len(p) == 0 {
		if _, err := l.Conn.Write(out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (l *listConn) Close() error {
	if len(l.partial) > 0 {
		l.Conn.Write(l.partial)
		l.partial = nil
	}
	return l.Conn.Close()
}

// listFake is what follows the mode in ftpserverlib's LIST line.
const listFake = " 1 ftp ftp "

// entry rewrites "MODE 1 ftp ftp SIZE(12) DATE(12) NAME".
func (l *listConn) entry(line string) string {
	i := strings.Index(line, listFake)
	fs := l.sess.driver()
	if i < 0 || fs == nil {
		return line
	}
	rest := line[i+len(listFake):] // SIZE(12) " " DATE(12) " " NAME
	if len(rest) < 12+1+12+1 {
		return line
	}
	fi, ok := fs.Listed(rest[26:])
	if !ok {
		return line
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return line
	}
	return line[:i] + " 1 " + ownerName(st.Uid) + " " + groupName(st.Gid) + " " + rest
}

var names sync.Map // "u123" or "g123" -> name

// ownerName is the account name of uid, or the number if it has none.
func ownerName(uid uint32) string {
	return lookupName("u", uid, func(id string) (string, error) {
		u, err := user.LookupId(id)
		if err != nil {
			return "", err
		}
		return u.Username, nil
	})
}

// groupName is the group name of gid, or the number if it has none.
func groupName(gid uint32) string {
	return lookupName("g", gid, func(id string) (string, error) {
		g, err := user.LookupGroupId(id)
		if err != nil {
			return "", err
		}
		return g.Name, nil
	})
}

func lookupName(kind string, id uint32, lookup func(string) (string, error)) string {
	key := kind + strconv.FormatUint(uint64(id), 10)
	if v, ok := names.Load(key); ok {
		return v.(string)
	}
	name, err := lookup(strconv.FormatUint(uint64(id), 10))
	if err != nil || name == "" || strings.ContainsAny(name, " \r\n") {
		name = strconv.FormatUint(uint64(id), 10)
	}
	names.Store(key, name)
	return name
}
