package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"

	"github.com/ftpsd/ftpsd/ban"
	"github.com/ftpsd/ftpsd/driver"
	"github.com/ftpsd/ftpsd/pasvports"
)

// session is one control connection and the ftpserverlib server embedded for
// it. It is that server's MainDriver, so every hook below knows whose
// connection it is serving.
type session struct {
	srv       *Server
	id        uint64
	clientIP  netip.Addr
	clientKey netip.Prefix  // the source clientIP counts as (IPv6: its prefix)
	closing   chan struct{} // closed when the session is being closed
	bind      *binding
	implicit  bool
	proxied   bool // came through a balancer (PROXY header): clientIP is the header's
	log       *slog.Logger
	ln        *oneShot
	endOnce   sync.Once
	closeOnce sync.Once

	mu       sync.Mutex
	cc       ftpserver.ClientContext
	user     string
	fs       *driver.FS
	lease    *dataListener // the latest passive socket, if any
	data     *dataConn     // the current passive data connection, if any
	start    time.Time
	closedCC bool

	// Set by the control layer (ctlConn): TLS on the control connection,
	// PROT P for data, and what the next data connection carries.
	ctlTLS atomic.Bool
	protP  atomic.Bool
	// listing is what the next data connection carries: plain data, a
	// LIST (listowners.go) or an MLSD, whose lines conns.go rewrites.
	listing atomic.Uint32
	// factSel is the OPTS MLST selection; nil means all facts.
	factSel atomic.Pointer[[]string]
}

// Values of session.listing.
const (
	noListing = iota
	listListing
	mlsdListing
)

var (
	_ ftpserver.MainDriver                        = (*session)(nil)
	_ ftpserver.MainDriverExtensionPassiveWrapper = (*session)(nil)
	_ ftpserver.MainDriverExtensionUserVerifier   = (*session)(nil)
	_ ftpserver.MainDriverExtensionQuitMessage    = (*session)(nil)
)

// via is the balancer the connection came through ("" for a direct one).
func (s *Server) runSession(conn net.Conn, ip netip.Addr, src netip.Prefix, bind *binding, implicit bool, via string) {
	sess := &session{
		proxied:   via != "",
		bind:      bind,
		srv:       s,
		id:        s.nextID.Add(1),
		clientIP:  ip,
		clientKey: src,
		closing:   make(chan struct{}),
		implicit:  implicit,
		start:     time.Now(),
	}
	// Implicit TLS (handled before) protects the data connections too
	// unless the client sends PROT C.
	sess.ctlTLS.Store(implicit)
	sess.protP.Store(implicit)
	sess.ln = newOneShot(newCtlConn(conn, sess))
	sess.log = s.log.With("session", sess.id, "client", conn.RemoteAddr().String())
	s.register(sess)
	attrs := []any{"implicit_tls", implicit, "local", conn.LocalAddr().String()}
	if via != "" {
		attrs = append(attrs, "via", via)
	}
	sess.log.Info("session start", attrs...)

	ftp := ftpserver.NewFtpServer(sess)
	// See libHandler for what is kept of ftpserverlib's log.
	ftp.Logger = slog.New(libHandler{sess.log.Handler(), func() { s.observer().TLSFailure("control") }})
	if err := ftp.Listen(); err != nil {
		sess.log.Error("start session", "err", err)
		conn.Close()
		sess.end()
		return
	}
	if err := ftp.Serve(); err != nil {
		sess.log.Error("session serve", "err", err)
		conn.Close()
		sess.end()
	}
}

// end runs once per session (ClientDisconnected, or a failed start).
// ftpserverlib closes the session's transfer only after ClientDisconnected
// returns; closing it here first means the port and pinhole are released
// before the session stops counting as live (Shutdown relies on that).
func (sess *session) end() {
	sess.endOnce.Do(sess.finish)
}

func (sess *session) finish() {
	sess.ln.Close()
	sess.mu.Lock()
	fs, user, lease, data := sess.fs, sess.user, sess.lease, sess.data
	sess.fs = nil
	sess.mu.Unlock()
	if data != nil {
		data.Close()
	}
	if lease != nil {
		lease.Close()
	}
	if fs != nil {
		fs.Close()
	}
	sess.srv.unregister(sess)
	sess.log.Info("session end", "user", user, "duration", time.Since(sess.start).Round(time.Millisecond),
		"ports_free", sess.srv.ports.Free())
}

// close forces the control connection shut (server shutdown).
func (sess *session) close() {
	sess.closeOnce.Do(sess.closeNow)
}

func (sess *session) closeNow() {
	close(sess.closing)
	sess.mu.Lock()
	cc, lease := sess.cc, sess.lease
	sess.closedCC = true
	sess.mu.Unlock()
	// ftpserverlib's Close waits for a transfer blocked in Accept (until
	// data_timeout); ending the lease first makes that Accept return now.
	if lease != nil {
		lease.Close()
	}
	if cc != nil {
		cc.Close()
	} else {
		sess.ln.conn.Close()
	}
}

// busy reports whether a data transfer is under way.
func (sess *session) busy() bool {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	return sess.data != nil && !sess.data.closed.Load()
}

func seconds(d time.Duration) int {
	return int(math.Ceil(d.Seconds()))
}

// GetSettings returns a fresh copy each call: ftpserverlib writes to it.
func (sess *session) GetSettings() (*ftpserver.Settings, error) {
	cfg := sess.srv.cfg
	listenAddr := ""
	if sess.ln != nil && sess.ln.conn != nil {
		// Only server STAT shows it ("Connected to ..."): the listener
		// is ours, so ftpserverlib does not know the address.
		listenAddr = sess.ln.Addr().String()
	}
	return &ftpserver.Settings{
		Listener:                 sess.ln,
		ListenAddr:               listenAddr,
		PublicHost:               cfg.Server.PublicHost,
		PublicIPResolver:         sess.publicIP,
		Banner:                   "ftpsd ready",
		PassiveTransferPortRange: sess.srv.ports.Getter(),
		IdleTimeout:              seconds(cfg.Server.IdleTimeout),
		ConnectionTimeout:        seconds(cfg.Server.DataTimeout),
		// ftpsd terminates TLS itself (ctlConn, dataListener), so
		// ftpserverlib sees clear text; PreAuthUser, AuthUser and
		// WrapPassiveListener enforce [tls] require.
		TLSRequired: ftpserver.ClearOrEncrypted,
		// Active mode makes the server connect out to an address the client
		// names (FTP bounce); passive mode with pinholes is the whole point.
		DisableActiveMode: true,
		// SITE reaches the driver's Site, which offers CHMOD, UMASK, HELP.
		DisableSite: false,
		// Transfers are byte-for-byte in TYPE A too, as with vsftpd's
		// defaults, so SIZE and REST are exact and allowed in either type.
		DisableASCIIConversion: true,
		DefaultTransferType:    ftpserver.TransferTypeBinary,
		PasvConnectionsCheck:   ftpserver.IPMatchRequired,
	}, nil
}

// publicIP answers PASV when public_host is empty: PASV can only carry IPv4.
func (sess *session) publicIP(cc ftpserver.ClientContext) (string, error) {
	ap, err := netip.ParseAddrPort(cc.LocalAddr().String())
	if err != nil {
		return "", fmt.Errorf("local address %v: %w", cc.LocalAddr(), err)
	}
	if a := ap.Addr().Unmap(); a.Is4() {
		return a.String(), nil
	}
	return "", errors.New("PASV cannot name an IPv6 address: use EPSV")
}

// ClientConnected records the session's context and greets the client.
func (sess *session) ClientConnected(cc ftpserver.ClientContext) (string, error) {
	sess.mu.Lock()
	sess.cc = cc
	closed := sess.closedCC
	sess.mu.Unlock()
	if closed {
		return "", errors.New("server shutting down")
	}
	if sess.srv.cfg.TLS.Require && !sess.implicit {
		return "ftpsd ready (TLS required: AUTH TLS)", nil
	}
	return "ftpsd ready", nil
}

// ClientDisconnected fires for every session, also those that failed early.
func (sess *session) ClientDisconnected(ftpserver.ClientContext) {
	sess.end()
}

// PreAuthUser refuses USER on a clear-text control connection when TLS is
// required, with a 530 reply before any password can be sent.
func (sess *session) PreAuthUser(_ ftpserver.ClientContext, user string) error {
	if sess.srv.cfg.TLS.Require && !sess.ctlTLS.Load() {
		sess.log.Warn("clear-text login refused", "user", user)
		sess.tarpit(sess.failure(ban.WeightClearTextUser, "clear-text USER while TLS is required"))
		return errors.New("TLS required: send AUTH TLS before USER")
	}
	return nil
}

// AuthUser checks the password and returns the user's confined file system.
func (sess *session) AuthUser(cc ftpserver.ClientContext, user, pass string) (ftpserver.ClientDriver, error) {
	if sess.srv.cfg.TLS.Require && !sess.ctlTLS.Load() {
		sess.log.Warn("clear-text login refused", "user", user)
		return nil, errors.New("TLS required: send AUTH TLS before USER")
	}
	if _, banned := sess.srv.bans.Banned(sess.clientIP, time.Now()); banned {
		// Sessions of a banned source are being closed: no more hashing for it.
		return nil, errBadLogin
	}
	acc, err := sess.checkLogin(user, pass)
	sess.srv.observer().Login(user, sess.clientIP, err == nil)
	if err != nil {
		delay := sess.failure(ban.WeightFailedLogin, "failed login")
		sess.log.Warn("login failed", "user", user, "tarpit", delay)
		sess.tarpit(delay)
		return nil, errBadLogin
	}
	opts := driver.Options{
		ReadOnly:       acc.ReadOnly,
		Umask:          acc.Umask,
		OnTransfer:     sess.transferDone(user),
		UploadComplete: sess.uploadComplete,
		SkipSync:       sess.srv.cfg.Storage.SkipFsync,
		Logger:         sess.log.With("user", user),
		Cwd:            cc.Path,
	}
	var fs *driver.FS
	if acc.S3 != nil {
		fs = driver.NewS3(sess.srv.s3.Fs(acc.S3.Bucket, acc.S3.Prefix, driver.S3Options{}), opts)
	} else {
		fs, err = driver.New(acc.Root, opts)
	}
	if err != nil {
		sess.log.Error("login: open root", "user", user, "err", err)
		return nil, errors.New("home directory unavailable")
	}
	sess.mu.Lock()
	if sess.fs != nil {
		sess.fs.Close()
	}
	sess.user, sess.fs = user, fs
	sess.mu.Unlock()
	if !sess.srv.stillGranted(acc) { // a reload changed the user meanwhile; see revoke.go
		sess.mu.Lock()
		sess.user, sess.fs = "", nil
		sess.mu.Unlock()
		fs.Close()
		sess.log.Warn("login failed: user changed by a reload during login", "user", user)
		return nil, errBadLogin
	}
	sess.bind.login(user, acc.RequireSessionReuse)
	sess.log.Info("login", "user", user, "read_only", acc.ReadOnly)
	return fs, nil
}

// GetTLSConfig returns the session's own configs (see newBinding): the
// control one for AUTH TLS, a new data one once the control connection is
// TLS (ftpsd asks for one per data connection, conns.go).
func (sess *session) GetTLSConfig() (*tls.Config, error) {
	// ftpsd terminates TLS itself (control.go), so ftpserverlib's view of
	// the control channel is not the one to ask.
	if sess.ctlTLS.Load() {
		return sess.bind.dataConfig(), nil
	}
	return &sess.bind.control, nil
}

// QuitMessage is the 221 text.
func (sess *session) QuitMessage() string { return "Goodbye" }

// WrapPassiveListener is where a passive transfer gets its pinhole: ftpserverlib
// has bound a port from the pool and is about to send the 227/229 reply. The
// lease opens the pinhole for exactly (this client, that port) first.
func (sess *session) WrapPassiveListener(ln net.Listener) (net.Listener, error) {
	sess.mu.Lock()
	cc, user := sess.cc, sess.user
	sess.mu.Unlock()
	if sess.srv.cfg.TLS.Require && !sess.protP.Load() {
		ln.Close()
		return nil, errors.New("TLS required for data: send PBSZ 0 and PROT P first")
	}
	// PASV names an IPv4 address: a client on an IPv6 control connection
	// would connect from another address than the one the pinhole admits
	// (and without public_host ftpserverlib cannot even build the reply,
	// and drops the listener unclosed). Refuse before leasing a port.
	if cc != nil && cc.GetLastCommand() == "PASV" && !sess.clientIP.Is4() {
		ln.Close()
		return nil, errors.New("PASV cannot name an IPv6 address: use EPSV")
	}
	// One PASV, one data connection: a new PASV ends the previous lease.
	// ftpserverlib does so too, but only if it stored the previous one.
	sess.mu.Lock()
	prev := sess.lease
	sess.lease = nil
	sess.mu.Unlock()
	if prev != nil {
		prev.Close()
	}
	lease, err := sess.srv.ports.Lease(ln, sess.clientIP, fmt.Sprintf("user=%s session=%d", user, sess.id), sess.srv.cfg.Server.DataTimeout)
	if errors.Is(err, pasvports.ErrOverShare) {
		ln.Close()
		sess.log.Warn("passive transfer refused", "err", err)
		return nil, fmt.Errorf("too many passive ports held by your address (at most %d at once): use or drop the ones you asked for", sess.srv.ports.Share())
	}
	if err != nil {
		ln.Close()
		sess.log.Error("passive transfer refused", "err", err)
		return nil, errors.New("no passive data port available, try again")
	}
	dl := &dataListener{Lease: lease, sess: sess}
	sess.mu.Lock()
	sess.lease, sess.data = dl, nil
	sess.mu.Unlock()
	return dl, nil
}

// uploadComplete tells the driver whether the data stream of the upload that
// just ended was closed on purpose. Over TLS a client that finished sends
// close_notify; a stream that simply stops (client killed, link cut) is a
// truncated upload and must not replace the previous file.
func (sess *session) uploadComplete() error {
	sess.mu.Lock()
	dc := sess.data
	sess.mu.Unlock()
	if dc == nil {
		// Nothing was received: never replace a file with an empty one.
		return errors.New("no data connection was opened")
	}
	if !dc.tls {
		return nil
	}
	if dc.rawEOF.Load() {
		return errors.New("data connection ended without TLS close_notify")
	}
	return nil
}

// driver is the logged-in user's file system, or nil before login.
func (sess *session) driver() *driver.FS {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	return sess.fs
}

// context is ftpserverlib's view of the session, or nil before it started.
func (sess *session) context() ftpserver.ClientContext {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	return sess.cc
}

// facts are the MLSx facts the client selected (all unless OPTS MLST).
func (sess *session) facts() []string {
	if p := sess.factSel.Load(); p != nil {
		return *p
	}
	return allFacts
}
