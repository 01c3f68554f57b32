package server

import (
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"

	"github.com/ftpsd/ftpsd/driver"
)

// intercept answers the commands ftpsd handles itself (see ctlConn) and
// reports whether it did; any other line goes on to ftpserverlib unchanged.
// An error ends the session.
func (c *ctlConn) intercept(line []byte) (bool, error) {
	text := strings.TrimSuffix(strings.TrimSuffix(string(line), "\n"), "\r")
	cmd, param, _ := strings.Cut(text, " ")
	switch strings.ToUpper(cmd) {
	case "AUTH":
		return true, c.auth(param)
	case "PBSZ":
		if !c.sess.ctlTLS.Load() {
			return true, c.reply(503, "PBSZ needs a TLS control connection (AUTH TLS)")
		}
		return true, c.reply(200, "PBSZ=0")
	case "PROT":
		return true, c.prot(param)
	case "FEAT":
		return true, c.feat()
	case "HELP":
		return true, c.help(param)
	case "PORT", "EPRT", "LPRT":
		return true, c.reply(502, "Active mode is disabled: use EPSV or PASV")
	case "PASV", "LPSV":
		if c.state.epsvAll {
			return true, c.reply(503, "EPSV ALL is in effect: use EPSV")
		}
	case "EPSV":
		if c.sess.noEPSV() {
			// A 5xx makes clients (curl, lftp) fall back to PASV, whose
			// reply names this node (public_host).
			return true, c.reply(502, "EPSV is off behind a load balancer (its reply names no address, so the data connection would go to the balancer): use PASV")
		}
		return c.epsv(param)
	case "OPTS":
		return c.opts(param)
	case "STAT":
		if strings.TrimSpace(param) == "" {
			return false, nil // server status: ftpserverlib's
		}
		return true, c.loggedIn(func(fs *driver.FS) error { return c.stat(fs, param) })
	case "MLST":
		return true, c.loggedIn(func(fs *driver.FS) error { return c.mlst(fs, param) })
	case "HASH":
		return true, c.loggedIn(func(fs *driver.FS) error { return c.hash(fs, param) })
	case "REST":
		// ftpserverlib answers a bad offset with 550 and strconv's text.
		if n, err := strconv.ParseInt(strings.TrimSpace(param), 10, 64); err != nil || n < 0 {
			return true, c.reply(501, "REST needs a byte offset (0 or more)")
		}
	case "MKD", "XMKD":
		if c.sess.driver() != nil && !driver.ValidName(param) {
			return true, c.reply(553, driver.ErrBadName.Error())
		}
	case "STOR", "APPE":
		if c.sess.driver() != nil {
			c.markUpload()
		}
		c.sess.listing.Store(noListing)
	case "RETR", "NLST":
		c.sess.listing.Store(noListing)
	case "LIST":
		c.sess.listing.Store(listListing)
	case "MLSD":
		c.sess.listing.Store(mlsdListing)
	}
	return false, nil
}

func (c *ctlConn) loggedIn(fn func(*driver.FS) error) error {
	fs := c.sess.driver()
	if fs == nil {
		return c.reply(530, "Please login with USER and PASS")
	}
	return fn(fs)
}

func (c *ctlConn) auth(param string) error {
	if c.sess.ctlTLS.Load() {
		return c.reply(503, "The control connection is already protected")
	}
	switch strings.ToUpper(strings.TrimSpace(param)) {
	case "TLS", "TLS-C", "SSL", "TLS-P":
	default:
		return c.reply(504, "AUTH TLS is the only mechanism")
	}
	if err := c.reply(234, "AUTH TLS ok, start the TLS handshake"); err != nil {
		return err
	}
	return c.startTLS()
}

func (c *ctlConn) prot(param string) error {
	if !c.sess.ctlTLS.Load() {
		return c.reply(503, "PROT needs a TLS control connection (AUTH TLS)")
	}
	switch strings.ToUpper(strings.TrimSpace(param)) {
	case "P":
		c.sess.protP.Store(true)
		return c.reply(200, "PROT now Private")
	case "C":
		c.sess.protP.Store(false)
		return c.reply(200, "PROT now Clear")
	case "S", "E":
		return c.reply(536, "Only PROT P and PROT C are supported")
	}
	return c.reply(504, "Unknown protection level")
}

// epsv handles RFC 2428's arguments; a plain EPSV goes on to ftpserverlib.
func (c *ctlConn) epsv(param string) (bool, error) {
	arg := strings.ToUpper(strings.TrimSpace(param))
	if arg == "" || c.sess.driver() == nil {
		return false, nil
	}
	if arg == "ALL" {
		c.state.epsvAll = true
		return true, c.reply(200, "EPSV ALL ok: PASV, PORT and EPRT are now refused")
	}
	own := "1"
	if !c.sess.clientIP.Is4() {
		own = "2"
	}
	switch arg {
	case own:
		return false, nil
	case "1", "2":
		return true, c.reply(522, fmt.Sprintf("Network protocol not supported, use (%s)", own))
	}
	return true, c.reply(501, "EPSV takes ALL, 1 or 2")
}

// noEPSV reports whether EPSV is refused: for an IPv4 client that came
// through a balancer. EPSV's reply carries only a port, so the client would
// open its data connection to the address it sent the command to, the
// balancer. (An IPv6 client has no PASV; it keeps EPSV, which works where
// the balancer forwards each node's passive range to that node.)
func (sess *session) noEPSV() bool { return sess.proxied && sess.clientIP.Is4() }

// features is FEAT's list, one line each. Active mode is off, so neither
// EPRT nor PORT appears; MLST names its facts, which is what makes lftp
// (and others) use MLSD.
func (c *ctlConn) features() []string {
	var f []string
	if !c.sess.implicit {
		f = append(f, "AUTH TLS")
	}
	f = append(f, "PBSZ", "PROT", "UTF8", "CLNT", "SIZE", "MDTM", "MFMT", "REST STREAM")
	if !c.sess.noEPSV() {
		f = append(f, "EPSV")
	}
	f = append(f, "MLSD", "MLST "+factList(allFacts, c.sess.facts()), "HASH "+hashList(c.state.hash))
	return f
}

func (c *ctlConn) feat() error {
	f := c.features()
	lines := make([]string, 0, len(f)+1)
	for _, l := range f {
		lines = append(lines, " "+l)
	}
	return c.reply(211, "Features:", append(lines, "End")...)
}

// helpCommands is what HELP lists: the commands a client can use here.
var helpCommands = []string{
	"ABOR", "APPE", "AUTH", "CDUP", "CLNT", "CWD", "DELE", "EPSV", "FEAT", "HASH", "HELP", "LIST",
	"MDTM", "MFMT", "MKD", "MLSD", "MLST", "MODE", "NLST", "NOOP", "OPTS", "PASS", "PASV", "PBSZ",
	"PROT", "PWD", "QUIT", "REST", "RETR", "RMD", "RNFR", "RNTO", "SITE", "SIZE", "STAT", "STOR",
	"SYST", "TYPE", "USER", "XCWD", "XMKD", "XPWD", "XRMD",
}

func (c *ctlConn) help(param string) error {
	if strings.EqualFold(strings.TrimSpace(param), "SITE") {
		return c.reply(214, "SITE commands: CHMOD UMASK HELP")
	}
	var lines []string
	for i := 0; i < len(helpCommands); i += 10 {
		lines = append(lines, " "+strings.Join(helpCommands[i:min(i+10, len(helpCommands))], " "))
	}
	return c.reply(214, "The following commands are recognized:", append(lines, "Help OK")...)
}

func (c *ctlConn) opts(param string) (bool, error) {
	name, arg, _ := strings.Cut(strings.TrimSpace(param), " ")
	arg = strings.TrimSpace(arg)
	switch strings.ToUpper(name) {
	case "HASH":
		if arg == "" {
			return true, c.reply(200, c.state.hash)
		}
		if _, ok := hashAlgos[strings.ToUpper(arg)]; !ok {
			return true, c.reply(504, "Unknown algorithm, current selection not changed")
		}
		c.state.hash = strings.ToUpper(arg)
		return true, c.reply(200, c.state.hash)
	case "MLST":
		sel := selectFacts(arg)
		c.sess.factSel.Store(&sel)
		return true, c.reply(200, "MLST OPTS "+strings.Join(sel, ";")+facts0(sel))
	}
	return false, nil
}

// facts0 ends a non-empty fact list with ';', as RFC 3659 7.9 asks.
func facts0(f []string) string {
	if len(f) == 0 {
		return ""
	}
	return ";"
}

// absPath resolves an FTP path against the working directory, as
// ftpserverlib does for the commands it runs.
func (c *ctlConn) absPath(p string) string {
	if path.IsAbs(p) {
		return path.Clean(p)
	}
	cwd := "/"
	if cc := c.sess.context(); cc != nil {
		cwd = cc.Path()
	}
	return path.Join(cwd, p)
}

// oneLine keeps a file name from breaking a reply into forged lines.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return '?'
		}
		return r
	}, s)
}

// stat is STAT <path>: the ls-style status of a file or a directory's
// entries over the control connection. Leading ls options (-la) are ignored.
func (c *ctlConn) stat(fs *driver.FS, param string) error {
	p := strings.TrimSpace(param)
	for strings.HasPrefix(p, "-") {
		opt, rest, _ := strings.Cut(p, " ")
		if strings.Trim(opt[1:], "aAlLdFhR1") != "" {
			break
		}
		p = strings.TrimSpace(rest)
	}
	abs := c.absPath(p)
	fi, err := fs.Stat(abs)
	if err != nil {
		return c.reply(550, "STAT: "+err.Error())
	}
	now := time.Now()
	if !fi.IsDir() {
		return c.reply(213, "Status of "+oneLine(abs)+":", " "+oneLine(lsLine(fi, now)), "End of status")
	}
	infos, err := fs.List(abs)
	if err != nil {
		return c.reply(550, "STAT: "+err.Error())
	}
	lines := make([]string, 0, len(infos)+1)
	for _, e := range infos {
		lines = append(lines, " "+oneLine(lsLine(e, now)))
	}
	return c.reply(212, "Status of "+oneLine(abs)+":", append(lines, "End of status")...)
}

// mlst is MLST <path> (RFC 3659 7): the facts of one entry.
func (c *ctlConn) mlst(fs *driver.FS, param string) error {
	abs := c.absPath(param)
	fi, err := fs.Stat(abs)
	if err != nil {
		return c.reply(550, "MLST: "+err.Error())
	}
	return c.reply(250, "Listing "+oneLine(abs), " "+factsLine(fi, fs.ReadOnly(), c.sess.facts(), oneLine(abs)), "End")
}

// hash is HASH <path> (draft-bryan-ftpext-hash): the digest of a whole file
// with the algorithm chosen by OPTS HASH, computed by the driver.
func (c *ctlConn) hash(fs *driver.FS, param string) error {
	if param == "" {
		return c.reply(501, "HASH needs a file name")
	}
	abs := c.absPath(param)
	fi, err := fs.Stat(abs)
	if err != nil {
		return c.reply(550, "HASH: "+err.Error())
	}
	if !fi.Mode().IsRegular() {
		return c.reply(553, "HASH: not a regular file")
	}
	sum, err := fs.ComputeHash(abs, hashAlgos[c.state.hash], 0, fi.Size())
	if err != nil {
		return c.reply(550, "HASH: "+err.Error())
	}
	return c.reply(213, fmt.Sprintf("%s 0-%d %s %s", c.state.hash, fi.Size(), sum, oneLine(param)))
}

// hashAlgos are HASH's algorithms by their FEAT names (IANA hash names).
var hashAlgos = map[string]ftpserver.HASHAlgo{
	"SHA-256": ftpserver.HASHAlgoSHA256,
	"SHA-512": ftpserver.HASHAlgoSHA512,
	"SHA-1":   ftpserver.HASHAlgoSHA1,
	"MD5":     ftpserver.HASHAlgoMD5,
	"CRC32":   ftpserver.HASHAlgoCRC32,
}

// hashList is FEAT's HASH line: every algorithm, the selected one starred.
func hashList(selected string) string {
	var b strings.Builder
	for _, n := range []string{"SHA-256", "SHA-512", "SHA-1", "MD5", "CRC32"} {
		b.WriteString(n)
		if n == selected {
			b.WriteByte('*')
		}
		b.WriteByte(';')
	}
	return b.String()
}

// lsLine is one line of an ls -l style listing, as ftpserverlib's LIST writes it.
func lsLine(fi os.FileInfo, now time.Time) string {
	layout := "Jan _2 15:04"
	if now.Sub(fi.ModTime()) > 180*24*time.Hour || fi.ModTime().After(now.Add(time.Hour)) {
		layout = "Jan _2  2006"
	}
	return fmt.Sprintf("%s 1 ftp ftp %12d %s %s", fi.Mode(), fi.Size(), fi.ModTime().Format(layout), fi.Name())
}

// allFacts are the MLSx facts ftpsd gives, in FEAT's order.
var allFacts = []string{"type", "size", "modify", "perm", "unix.mode", "unix.owner", "unix.group"}

// factList is FEAT's MLST fact list, the selected ones starred.
func factList(all, selected []string) string {
	var b strings.Builder
	for _, f := range all {
		b.WriteString(f)
		for _, s := range selected {
			if s == f {
				b.WriteByte('*')
				break
			}
		}
		b.WriteByte(';')
	}
	return b.String()
}

// selectFacts parses OPTS MLST's fact list; unknown facts are dropped.
func selectFacts(arg string) []string {
	sel := []string{}
	for _, f := range strings.Split(arg, ";") {
		f = strings.ToLower(strings.TrimSpace(f))
		for _, known := range allFacts {
			if f == known {
				sel = append(sel, known)
				break
			}
		}
	}
	return sel
}

// factsLine is one MLSx entry: the selected facts, a space, the name.
func factsLine(fi os.FileInfo, readOnly bool, sel []string, name string) string {
	var b strings.Builder
	for _, f := range sel {
		switch f {
		case "type":
			if fi.IsDir() {
				b.WriteString("type=dir;")
			} else {
				b.WriteString("type=file;")
			}
		case "size":
			fmt.Fprintf(&b, "size=%d;", fi.Size())
		case "modify":
			fmt.Fprintf(&b, "modify=%s;", fi.ModTime().UTC().Format("20060102150405"))
		case "perm":
			b.WriteString("perm=" + perm(fi, readOnly) + ";")
		case "unix.mode":
			fmt.Fprintf(&b, "unix.mode=%04o;", fi.Mode().Perm())
		case "unix.owner", "unix.group":
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				id := st.Uid
				if f == "unix.group" {
					id = st.Gid
				}
				fmt.Fprintf(&b, "%s=%d;", f, id)
			}
		}
	}
	return b.String() + " " + name
}

// perm is RFC 3659's perm fact: what this account may do with the entry.
func perm(fi os.FileInfo, readOnly bool) string {
	switch {
	case fi.IsDir() && readOnly:
		return "el"
	case fi.IsDir():
		return "cdeflmp"
	case readOnly:
		return "r"
	}
	return "adfrw"
}
