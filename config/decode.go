package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/BurntSushi/toml"
	"golang.org/x/crypto/bcrypt"
)

// The document is decoded into a generic tree and walked here, rather than
// decoded straight into a struct: the struct decoder stops at the first
// type error, matches key names case-insensitively (so a misspelt "Listen"
// would be silently accepted) and reports unknown [[user]] keys without
// saying which user. Walking the tree reports every problem, exactly.

// schema lists the known keys of each table so unknown ones can be matched
// to what was probably meant. The readers below are what accept keys;
// TestSchemaMatchesReaders keeps the two in step.
var schema = map[string][]string{
	"server":     {"listen", "implicit_listen", "public_host", "max_clients", "max_clients_per_ip", "idle_timeout", "data_timeout", "run_as", "umask", "proxy_protocol"},
	"tls":        {"cert_file", "key_file", "min_version", "require", "require_session_reuse"},
	"passive":    {"ports", "max_per_ip"},
	"firewall":   {"mode", "table", "pinhole_timeout", "mark"},
	"storage":    {"state_dir", "fsync"}, // and the [storage.s3] table (s3.go)
	"storage.s3": {"endpoint", "region", "path_style", "credentials_file", "profile"},
	"user":       {"name", "password_hash", "root", "read_only", "umask", "require_session_reuse"},
	"log":        {"format", "xferlog"},
	"metrics":    {"listen"},
	"ban":        {"max_failures", "window", "duration", "allow", "ipv6_prefix"},
}

var tableName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

type decoder struct {
	file  string
	base  string // directory relative paths are resolved against
	lines *keyLines
	errs  Errors
}

// errorf records a problem at path (segments as built by table.key).
func (d *decoder) errorf(path []string, format string, args ...any) {
	d.errs = append(d.errs, &Error{
		File: d.file,
		Line: d.lines.find(path),
		Key:  strings.Join(path, "."),
		Msg:  fmt.Sprintf(format, args...),
	})
}

func (d *decoder) decode(src string) *Config {
	d.lines = scanKeyLines(src)
	var tree map[string]any
	if _, err := toml.Decode(src, &tree); err != nil {
		d.syntaxError(err)
		return nil
	}
	cfg := fileDefaults()
	root := &table{d: d, m: tree}
	d.server(root.section("server"), &cfg.Server)
	d.tls(root.section("tls"), &cfg.TLS)
	d.passive(root.section("passive"), &cfg.Passive)
	d.firewall(root.section("firewall"), &cfg.Firewall)
	d.storage(root.section("storage"), &cfg.Storage)
	d.log(root.section("log"), &cfg.Log)
	d.metrics(root.section("metrics"), &cfg.Metrics)
	d.ban(root.section("ban"), &cfg.Ban)
	cfg.Users = d.users(root, cfg.Server.Umask, cfg.TLS.RequireSessionReuse, cfg.Storage.S3 != nil)
	root.done()
	d.listeners(&cfg.Server, cfg.Passive)
	return cfg
}

// syntaxError turns a decoder error into an Error. The decoder's own idea of
// the key is often just the table, so the key defined on the failing line
// is preferred.
func (d *decoder) syntaxError(err error) {
	e := &Error{File: d.file, Msg: err.Error(), err: err}
	var pe toml.ParseError
	if errors.As(err, &pe) {
		e.Line = pe.Position.Line
		e.Msg = pe.Message
		e.Key = pe.LastKey
		if k, ok := d.lines.byLine[e.Line]; ok {
			e.Key = k
		}
	}
	d.errs = append(d.errs, e)
}

// table is one TOML table being walked; used records the keys read so the
// rest can be reported as unknown.
type table struct {
	d      *decoder
	prefix []string
	name   string // schema name, "" for the root
	m      map[string]any
	used   map[string]bool
}

func (t *table) key(k string) []string {
	return append(append([]string(nil), t.prefix...), segment(k))
}

// get returns the value of k, if present, and marks k as known.
func (t *table) get(k string) (any, bool) {
	if t.used == nil {
		t.used = map[string]bool{}
	}
	t.used[k] = true
	v, ok := t.m[k]
	return v, ok
}

// section returns the sub-table name; a missing or mistyped one is walked as
// empty so its defaults apply and the walk goes on.
func (t *table) section(name string) *table {
	sub := &table{d: t.d, prefix: t.key(name), name: name}
	v, ok := t.get(name)
	if !ok {
		return sub
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.d.errorf(sub.prefix, "must be a table ([%s]), not %s", name, typeName(v))
		return sub
	}
	sub.m = m
	return sub
}

// done reports every key of the table that nothing asked for.
func (t *table) done() {
	var unknown []string
	for k := range t.m {
		if !t.used[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		t.d.errorf(t.key(k), "unknown key%s", t.suggest(k))
	}
}

// suggest names the key probably meant: keys are case-sensitive, and a key
// put above the first [table] header lands at the top level.
func (t *table) suggest(k string) string {
	for _, known := range schema[t.name] {
		if strings.EqualFold(k, known) {
			return fmt.Sprintf(" (keys are case-sensitive: did you mean %q?)", known)
		}
	}
	if t.name != "" {
		return ""
	}
	for _, sec := range []string{"server", "tls", "passive", "firewall", "storage", "log", "metrics", "ban", "user"} {
		if strings.EqualFold(k, sec) {
			return fmt.Sprintf(" (keys are case-sensitive: did you mean %q?)", sec)
		}
		for _, known := range schema[sec] {
			if strings.EqualFold(k, known) {
				header := "[" + sec + "]"
				if sec == "user" {
					header = "[[user]]"
				}
				return fmt.Sprintf(" (did you mean %s.%s? put it under %s)", sec, known, header)
			}
		}
	}
	return ""
}

// mistyped reports a value of the wrong TOML type.
func (t *table) mistyped(k, want string, v any) {
	t.d.errorf(t.key(k), "must be %s, not %s", want, typeName(v))
}

func (t *table) str(dst *string, k string) bool {
	v, ok := t.get(k)
	if !ok {
		return false
	}
	s, ok := v.(string)
	if !ok {
		t.mistyped(k, "a string", v)
		return false
	}
	*dst = s
	return true
}

func (t *table) boolean(dst *bool, k string) {
	v, ok := t.get(k)
	if !ok {
		return
	}
	b, ok := v.(bool)
	if !ok {
		t.mistyped(k, "true or false", v)
		return
	}
	*dst = b
}

func (t *table) integer(dst *int, k string) bool {
	v, ok := t.get(k)
	if !ok {
		return false
	}
	i, ok := v.(int64)
	if !ok || int64(int(i)) != i {
		t.mistyped(k, "an integer", v)
		return false
	}
	*dst = int(i)
	return true
}

func (t *table) strs(dst *[]string, k string) bool {
	v, ok := t.get(k)
	if !ok {
		return false
	}
	arr, ok := v.([]any)
	if !ok {
		t.mistyped(k, "an array of strings", v)
		return false
	}
	out := make([]string, 0, len(arr))
	for i, e := range arr {
		s, ok := e.(string)
		if !ok {
			t.d.errorf(t.key(k), "element %d must be a string, not %s", i+1, typeName(e))
			return false
		}
		out = append(out, s)
	}
	*dst = out
	return true
}

// duration takes Go duration syntax; a TOML number would leave the unit to
// guesswork, so it is refused.
func (t *table) duration(dst *time.Duration, k string) {
	v, ok := t.get(k)
	if !ok {
		return
	}
	s, ok := v.(string)
	if !ok {
		t.mistyped(k, `a duration string such as "30s" or "5m"`, v)
		return
	}
	dur, err := time.ParseDuration(s)
	switch {
	case err != nil:
		t.d.errorf(t.key(k), `invalid duration %q: use Go syntax such as "30s", "5m" or "1h30m"`, s)
	case dur <= 0:
		t.d.errorf(t.key(k), "must be positive, not %q", s)
	default:
		*dst = dur
	}
}

// path reads a path and makes it absolute against the config file's
// directory, so the file means the same from any working directory. An empty
// string is refused unless optional, where it means "not set".
func (t *table) path(dst *string, k string, optional bool) {
	var s string
	if !t.str(&s, k) {
		return
	}
	if s == "" {
		if !optional {
			t.d.errorf(t.key(k), "must not be empty")
		}
		return
	}
	if !filepath.IsAbs(s) {
		s = filepath.Join(t.d.base, s)
	}
	*dst = filepath.Clean(s)
}

// unset reports whether k is absent or "", the two ways to leave an
// optional string out; other types were reported by the reader already.
func (t *table) unset(k string) bool {
	v, ok := t.m[k]
	return !ok || v == ""
}

func (d *decoder) server(t *table, s *Server) {
	t.strs(&s.Listen, "listen")
	t.strs(&s.ImplicitListen, "implicit_listen")
	if t.str(&s.PublicHost, "public_host") && s.PublicHost != "" {
		if a, err := netip.ParseAddr(s.PublicHost); err != nil || !a.Is4() {
			d.errorf(t.key("public_host"), "must be an IPv4 address such as \"203.0.113.7\" (PASV replies carry only IPv4), not %q", s.PublicHost)
		}
	}
	_, maxGiven := t.m["max_clients"]
	maxOK := t.integer(&s.MaxClients, "max_clients") || !maxGiven
	if maxOK && s.MaxClients < 1 {
		d.errorf(t.key("max_clients"), "must be at least 1, not %d", s.MaxClients)
		maxOK = false
	}
	_, perIPGiven := t.m["max_clients_per_ip"]
	switch {
	case !t.integer(&s.MaxClientsPerIP, "max_clients_per_ip"):
		// A small max_clients written alone lowers the per-IP default
		// with it, rather than failing on a key the file does not have.
		if !perIPGiven && maxOK && s.MaxClientsPerIP > s.MaxClients {
			s.MaxClientsPerIP = s.MaxClients
		}
	case s.MaxClientsPerIP < 1:
		d.errorf(t.key("max_clients_per_ip"), "must be at least 1, not %d", s.MaxClientsPerIP)
	case maxOK && s.MaxClientsPerIP > s.MaxClients:
		d.errorf(t.key("max_clients_per_ip"), "must not exceed max_clients (%d), not %d", s.MaxClients, s.MaxClientsPerIP)
	}
	t.duration(&s.IdleTimeout, "idle_timeout")
	t.duration(&s.DataTimeout, "data_timeout")
	d.service(t, s)
	d.proxyProtocol(t, s)
	t.done()
}

func (d *decoder) tls(t *table, c *TLS) {
	t.path(&c.CertFile, "cert_file", true)
	t.path(&c.KeyFile, "key_file", true)
	const selfSigned = "(leave both out for a self-signed certificate)"
	switch {
	case c.CertFile != "" && t.unset("key_file"):
		d.errorf(t.key("key_file"), "missing: cert_file is set, so key_file must be too %s", selfSigned)
	case c.KeyFile != "" && t.unset("cert_file"):
		d.errorf(t.key("cert_file"), "missing: key_file is set, so cert_file must be too %s", selfSigned)
	}
	for _, f := range []struct{ key, path string }{{"cert_file", c.CertFile}, {"key_file", c.KeyFile}} {
		if f.path == "" {
			continue
		}
		if fi, err := os.Stat(f.path); err != nil {
			d.errorf(t.key(f.key), "%s", statMsg(f.path, err))
		} else if fi.IsDir() {
			d.errorf(t.key(f.key), "%s is a directory, not a file", f.path)
		}
	}
	var v string
	if t.str(&v, "min_version") {
		switch v {
		case "1.2":
			c.MinVersion = tls.VersionTLS12
		case "1.3":
			c.MinVersion = tls.VersionTLS13
		default:
			d.errorf(t.key("min_version"), `must be "1.2" or "1.3", not %q`, v)
		}
	}
	t.boolean(&c.Require, "require")
	t.boolean(&c.RequireSessionReuse, "require_session_reuse")
	t.done()
}

func (d *decoder) passive(t *table, p *Passive) {
	var s string
	if t.str(&s, "ports") {
		lo, hi, err := parsePortRange(s)
		if err != nil {
			d.errorf(t.key("ports"), "%v", err)
		} else {
			p.PortMin, p.PortMax = lo, hi
		}
	}
	size := int(p.PortMax) - int(p.PortMin) + 1
	if t.integer(&p.MaxPerIP, "max_per_ip") && (p.MaxPerIP < 0 || p.MaxPerIP > size) {
		d.errorf(t.key("max_per_ip"), "must be 0 (a fifth of the range) to the number of passive ports (%d), not %d", size, p.MaxPerIP)
	}
	t.done()
}

// parsePortRange reads "A-B" or "A". Ports below 1024 are refused: the
// guard chain drops new connections to the whole range, which would cut off
// any well-known service that happens to be in it.
func parsePortRange(s string) (uint16, uint16, error) {
	bad := fmt.Errorf(`invalid port range %q: want "FIRST-LAST" such as "50000-50999"`, s)
	a, b, isRange := strings.Cut(s, "-")
	if !isRange {
		b = a
	}
	lo, ok1 := parsePort(a)
	hi, ok2 := parsePort(b)
	switch {
	case !ok1 || !ok2:
		return 0, 0, bad
	case lo < 1024 || hi > 65535:
		return 0, 0, fmt.Errorf("port range %q must lie within 1024-65535", s)
	case lo > hi:
		return 0, 0, fmt.Errorf("port range %q is reversed: the first port must not exceed the last", s)
	}
	return uint16(lo), uint16(hi), nil
}

// parsePort accepts plain decimal digits only (no sign, no service name).
func parsePort(s string) (int, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 6 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

func (d *decoder) storage(t *table, s *Storage) {
	t.path(&s.StateDir, "state_dir", false)
	var fsync string
	if t.str(&fsync, "fsync") {
		switch fsync {
		case "always":
			s.SkipFsync = false
		case "never":
			s.SkipFsync = true
		default:
			d.errorf(t.key("fsync"), `must be "always" or "never", not %q`, fsync)
		}
	}
	d.s3(t, s)
	t.done()
}

func (d *decoder) firewall(t *table, f *Firewall) {
	if t.str(&f.Mode, "mode") && f.Mode != "nftables" && f.Mode != "off" {
		d.errorf(t.key("mode"), `must be "nftables" or "off", not %q`, f.Mode)
	}
	if t.str(&f.Table, "table") && !tableName.MatchString(f.Table) {
		d.errorf(t.key("table"), "must be 1 to 64 characters from A-Z, a-z, 0-9, _ and -, not %q", f.Table)
	}
	t.duration(&f.PinholeTimeout, "pinhole_timeout")
	var mark string
	if t.str(&mark, "mark") && mark != "" {
		v, m, err := parseMark(mark)
		if err != nil {
			d.errorf(t.key("mark"), "%v", err)
		}
		f.Mark, f.MarkMask = v, m
	}
	t.done()
}

// parseMark reads "VALUE" or "VALUE/MASK" (each decimal or 0x-hex): the
// packet mark the guard sets on admitted connections, within MASK (default:
// the value's own bits), so the host's other mark bits are left alone.
func parseMark(s string) (uint32, uint32, error) {
	vs, ms, hasMask := strings.Cut(s, "/")
	num := func(x string) (uint32, error) {
		n, err := strconv.ParseUint(strings.TrimSpace(x), 0, 32)
		if err != nil {
			return 0, fmt.Errorf("mark %q: %q is not a 32-bit number (decimal or 0x-hex)", s, x)
		}
		return uint32(n), nil
	}
	v, err := num(vs)
	if err != nil {
		return 0, 0, err
	}
	mask := v
	if hasMask {
		if mask, err = num(ms); err != nil {
			return 0, 0, err
		}
	}
	switch {
	case v == 0:
		return 0, 0, fmt.Errorf("mark %q: the value must not be 0, which every unmarked packet has", s)
	case v&^mask != 0:
		return 0, 0, fmt.Errorf("mark %q: the value has bits outside the mask", s)
	}
	return v, mask, nil
}

func (d *decoder) users(root *table, umask os.FileMode, reuse, haveS3 bool) []User {
	v, ok := root.get("user")
	key := root.key("user")
	elem := func(i int) []string { return []string{key[0] + "[" + strconv.Itoa(i+1) + "]"} }
	var elems []any
	switch v := v.(type) {
	case []map[string]any:
		for _, m := range v {
			elems = append(elems, m)
		}
	case []any:
		elems = v
	default:
		if ok {
			d.errorf(key, "must be an array of tables ([[user]]), not %s", typeName(v))
			return nil
		}
	}
	if len(elems) == 0 {
		d.errorf(key, "no [[user]] defined: at least one user is required")
		return nil
	}
	var users []User
	first := map[string]int{} // name -> index of the user that has it
	for i, e := range elems {
		t := &table{d: d, name: "user", prefix: elem(i)}
		m, ok := e.(map[string]any)
		if !ok {
			d.errorf(t.prefix, "must be a table, not %s", typeName(e))
			continue
		}
		t.m = m
		u := User{RequireSessionReuse: reuse}
		if !t.str(&u.Name, "name") {
			if _, given := m["name"]; !given {
				d.errorf(t.key("name"), "missing: every [[user]] needs a name")
			}
		} else if msg := checkName(u.Name); msg != "" {
			d.errorf(t.key("name"), "%s", msg)
		} else if j, dup := first[u.Name]; dup {
			other := elem(j)
			d.errorf(t.key("name"), "duplicate user name %q (also %s, line %d)", u.Name, other[0], d.lines.find(append(other, "name")))
		} else {
			first[u.Name] = i
		}
		if !t.str(&u.PasswordHash, "password_hash") {
			if _, given := m["password_hash"]; !given {
				d.errorf(t.key("password_hash"), "missing: make one with `ftpsd passwd`")
			}
		} else if msg := checkHash(u.PasswordHash); msg != "" {
			d.errorf(t.key("password_hash"), "%s", msg)
		}
		if s, ok := m["root"].(string); ok && strings.HasPrefix(s, "s3://") {
			t.get("root")
			u.Root = s
			r, err := parseS3Root(s)
			switch {
			case err != nil:
				d.errorf(t.key("root"), "%v", err)
			case !haveS3:
				d.errorf(t.key("root"), "an s3:// root needs a [storage.s3] table (endpoint, region, credentials_file)")
			default:
				u.S3 = r
			}
		} else if t.path(&u.Root, "root", false); u.Root != "" {
			if fi, err := os.Stat(u.Root); err != nil {
				d.errorf(t.key("root"), "%s", statMsg(u.Root, err))
			} else if !fi.IsDir() {
				d.errorf(t.key("root"), "%s is not a directory", u.Root)
			}
		} else if _, given := m["root"]; !given {
			d.errorf(t.key("root"), "missing: every [[user]] needs a root directory")
		}
		t.boolean(&u.ReadOnly, "read_only")
		u.Umask = umask
		t.umask(&u.Umask, "umask")
		t.boolean(&u.RequireSessionReuse, "require_session_reuse")
		t.done()
		users = append(users, u)
	}
	return users
}

// checkName keeps names that FTP's USER command can carry and logs can show
// unambiguously.
func checkName(s string) string {
	if s == "" {
		return "must not be empty"
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar {
			return fmt.Sprintf("%q contains whitespace, control or invalid characters", s)
		}
	}
	return ""
}

// checkHash accepts the bcrypt forms x/crypto/bcrypt verifies. The value is
// never echoed: a plaintext password put there by mistake must not end up
// in logs.
func checkHash(h string) string {
	const help = "not a bcrypt hash ($2a$, $2b$ or $2y$ followed by cost and 53 characters); make one with `ftpsd passwd`"
	if h == "" {
		return "must not be empty: make one with `ftpsd passwd`"
	}
	if len(h) != 60 || !(strings.HasPrefix(h, "$2a$") || strings.HasPrefix(h, "$2b$") || strings.HasPrefix(h, "$2y$")) || h[6] != '$' {
		return help
	}
	for i := 7; i < len(h); i++ {
		c := h[i]
		if !(isBare(c) && c != '_' && c != '-' || c == '.' || c == '/') {
			return help
		}
	}
	if _, err := bcrypt.Cost([]byte(h)); err != nil {
		var ce bcrypt.InvalidCostError
		if errors.As(err, &ce) {
			return fmt.Sprintf("bcrypt cost %d is outside %d..%d", int(ce), bcrypt.MinCost, bcrypt.MaxCost)
		}
		return help
	}
	return ""
}

// statMsg words a failed os.Stat without repeating Go's "stat PATH:" prefix.
func statMsg(path string, err error) string {
	if errors.Is(err, os.ErrNotExist) {
		return path + " does not exist"
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%s: %v", path, pe.Err)
	}
	return err.Error()
}

// listener is one parsed control listener, kept with where it came from.
type listener struct {
	key  string // "listen" or "implicit_listen"
	text string
	addr netip.Addr // invalid for an empty host
	port int
}

// wildcard reports a listener on all addresses. Go listens on 0.0.0.0 and
// :: with one dual-stack socket, so either takes the port for both families.
func (l listener) wildcard() bool {
	return !l.addr.IsValid() || l.addr.Unmap().IsUnspecified()
}

func (l listener) overlaps(o listener) bool {
	if l.port != o.port {
		return false
	}
	return l.wildcard() || o.wildcard() || l.addr.Unmap() == o.addr.Unmap()
}

// listeners checks the control listeners together: each must parse, two may
// not claim the same address and port (the second bind would fail at start,
// after the config was declared fine), none may sit in the passive range
// (the guard chain would drop its new connections), and there must be one.
func (d *decoder) listeners(s *Server, p Passive) {
	var all []listener
	for _, group := range []struct {
		key   string
		addrs []string
	}{{"listen", s.Listen}, {"implicit_listen", s.ImplicitListen}} {
		path := []string{"server", group.key}
		for _, a := range group.addrs {
			l, err := parseListener(a)
			if err != nil {
				d.errorf(path, "%v", err)
				continue
			}
			l.key = group.key
			for _, o := range all {
				if l.overlaps(o) {
					d.errorf(path, "%q overlaps %q (server.%s): both would bind port %d", a, o.text, o.key, l.port)
					break
				}
			}
			if l.port >= int(p.PortMin) && l.port <= int(p.PortMax) {
				d.errorf(path, "%q: port %d lies in passive.ports %d-%d, where the firewall drops new connections", a, l.port, p.PortMin, p.PortMax)
			}
			all = append(all, l)
		}
	}
	if len(s.Listen) == 0 && len(s.ImplicitListen) == 0 {
		d.errorf([]string{"server", "listen"}, "no listener: listen and implicit_listen are both empty")
	}
}

// parseListener takes host:port with an IP literal or empty host (all
// addresses). Host names are refused: what they resolve to can change, and
// overlaps could not be checked.
func parseListener(a string) (listener, error) {
	host, portStr, err := net.SplitHostPort(a)
	if err != nil {
		return listener{}, fmt.Errorf(`invalid address %q: want HOST:PORT such as "0.0.0.0:21" or "[::]:21"`, a)
	}
	port, ok := parsePort(portStr)
	if !ok || portStr != strings.TrimSpace(portStr) || port < 1 || port > 65535 {
		return listener{}, fmt.Errorf("invalid address %q: port must be a number from 1 to 65535", a)
	}
	l := listener{text: a, port: port}
	if host != "" {
		if l.addr, err = netip.ParseAddr(host); err != nil {
			return listener{}, fmt.Errorf("invalid address %q: host must be an IP address, or empty for all addresses", a)
		}
	}
	return l, nil
}

// typeName names a decoded value's TOML type for messages.
func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case []map[string]any:
		return "an array of tables"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date/time"
	}
	return fmt.Sprintf("%T", v)
}
