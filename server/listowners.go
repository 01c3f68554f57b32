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
	return line[:i] + " 1 " + idName(false, st.Uid) + " " + idName(true, st.Gid) + " " + rest
}

// nameKey is a uid (group false) or a gid (group true).
type nameKey struct {
	group bool
	id    uint32
}

var names sync.Map // nameKey -> name

// idName is the account or group name of id, or the number if it has none.
// Names are looked up once per process: a listing asks for every entry.
func idName(group bool, id uint32) string {
	key := nameKey{group, id}
	if v, ok := names.Load(key); ok {
		return v.(string)
	}
	num := strconv.FormatUint(uint64(id), 10)
	var name string
	if group {
		if g, err := user.LookupGroupId(num); err == nil {
			name = g.Name
		}
	} else if u, err := user.LookupId(num); err == nil {
		name = u.Username
	}
	if name == "" || strings.ContainsAny(name, " \r\n") {
		name = num
	}
	names.Store(key, name)
	return name
}
