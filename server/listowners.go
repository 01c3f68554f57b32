package server

import (
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// listFake is what follows the mode in ftpserverlib's LIST line.
const listFake = " 1 ftp ftp "

// listEntry puts the real owner and group into a LIST line, "MODE 1 ftp
// ftp SIZE(12) DATE(12) NAME", where ftpserverlib v0.32.3 writes "ftp ftp"
// (handle_dirs.go, fileStat with fakeUser/fakeGroup, no hook). Upstream:
// take the names from an optional Owner()/Group() of the os.FileInfo the
// driver's ReadDir returns.
func (sess *session) listEntry(line string) string {
	i := strings.Index(line, listFake)
	fs := sess.driver()
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
