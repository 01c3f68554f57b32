package config

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
)

// Log says how ftpsd writes its own log and the transfer log.
type Log struct {
	Format  string // "text" (default) or "json"
	Xferlog string // absolute path of a vsftpd-style transfer log; "" = none
}

// Metrics is the Prometheus endpoint.
type Metrics struct {
	Listen string // host:port; "" = off (default)
}

// service reads the [server] keys about the account ftpsd runs as.
func (d *decoder) service(t *table, s *Server) {
	if t.str(&s.RunAs, "run_as") && s.RunAs != "" {
		if msg := checkAccount(s.RunAs); msg != "" {
			d.errorf(t.key("run_as"), "%s", msg)
		}
	}
	t.umask(&s.Umask, "umask")
}

// checkAccount makes sure run_as names an existing account other than
// root, so that `ftpsd check` catches a typo before a start fails.
func checkAccount(name string) string {
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Sprintf("account %q does not exist (create it with: useradd --system --home-dir /var/lib/ftpsd --shell /usr/sbin/nologin %s)", name, name)
	}
	if u.Uid == "0" {
		return fmt.Sprintf("account %q is root: leave run_as empty to stay root, or name an unprivileged account", name)
	}
	return ""
}

// umask reads an octal permission mask written as a string ("022"): TOML
// has no leading-zero integers, and 22 written as a number would be read
// as decimal.
func (t *table) umask(dst *os.FileMode, k string) {
	var s string
	if !t.str(&s, k) {
		return
	}
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || s == "" || v > 0o777 {
		t.d.errorf(t.key(k), `must be an octal mask from "000" to "777" such as "022", not %q`, s)
		return
	}
	*dst = os.FileMode(v)
}

func (d *decoder) log(t *table, l *Log) {
	if t.str(&l.Format, "format") && l.Format != "text" && l.Format != "json" {
		d.errorf(t.key("format"), `must be "text" or "json", not %q`, l.Format)
	}
	t.path(&l.Xferlog, "xferlog", true)
	t.done()
}

func (d *decoder) metrics(t *table, m *Metrics) {
	if t.str(&m.Listen, "listen") && m.Listen != "" {
		if _, err := parseListener(m.Listen); err != nil {
			d.errorf(t.key("listen"), "%v", err)
		}
	}
	t.done()
}
