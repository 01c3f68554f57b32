// Package server owns ftpsd's control listeners and accept loop, and runs one
// embedded ftpserverlib server per control connection so that every hook
// knows the session it serves.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ftpsd/ftpsd/ban"
	"github.com/ftpsd/ftpsd/config"
	"github.com/ftpsd/ftpsd/driver"
	"github.com/ftpsd/ftpsd/nft"
	"github.com/ftpsd/ftpsd/pasvports"
)

// handshakeTimeout bounds the implicit-TLS handshake, which ftpsd performs
// itself so that a client that connects and stays silent is dropped.
const handshakeTimeout = 10 * time.Second

// Server is an FTPS server. Create it with New, run it with Serve, stop it with Shutdown.
type Server struct {
	cfg   *config.Config
	log   *slog.Logger
	fw    nft.Firewall
	ports *pasvports.Pool

	tlsConf atomic.Pointer[tls.Config]
	users   atomic.Pointer[accounts]
	obs     atomic.Pointer[Observer] // see observe.go
	tickets *ticketKeys
	// s3 reaches [storage.s3], made once at start with the credentials
	// read then (before privileges are dropped); nil without the table.
	s3 *driver.S3Client

	bans           *ban.Tracker
	gate           *ban.Gate
	stopExpire     chan struct{}
	stopExpireOnce sync.Once

	proxyTimeout time.Duration // tests: the PROXY header timeout, else proxyHeaderTimeout

	nextID atomic.Uint64

	mu        sync.Mutex
	listeners []net.Listener
	sessions  map[uint64]*session
	admitted  int                  // connections past admit, including those still in the implicit TLS handshake
	perIP     map[netip.Prefix]int // by source: IPv4 address or IPv6 prefix
	peak      int                  // most sessions at once since memory was last released (memory.go)
	closing   bool
	idle      chan struct{} // closed when the last session ends during shutdown
	wg        sync.WaitGroup
}

// New prepares a server: certificate and users. It opens no socket and
// touches no firewall, so that a config that cannot run fails before
// anything on the host has changed.
// The returned passwords were generated for users configured without a hash; show them to the operator once.
func New(cfg *config.Config, logger *slog.Logger) (*Server, []GeneratedPassword, error) {
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{
		cfg:      cfg,
		log:      logger,
		sessions: make(map[uint64]*session),
		perIP:    make(map[netip.Prefix]int),
	}
	newBanState(s)
	if err := os.MkdirAll(cfg.Storage.StateDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("create state_dir: %w", err)
	}
	tc, err := loadTLS(cfg.TLS, cfg.Storage.StateDir)
	if err != nil {
		return nil, nil, err
	}
	s.tlsConf.Store(tc)
	if s.tickets, err = newTicketKeys(time.Now); err != nil {
		return nil, nil, err
	}
	if s.s3, err = newS3Client(cfg.Storage.S3, logger); err != nil {
		return nil, nil, err
	}
	users, generated, err := newAccounts(cfg.Users)
	if err != nil {
		return nil, nil, err
	}
	s.users.Store(users)
	return s, generated, nil
}

// Ports is the passive port pool (for status and tests).
func (s *Server) Ports() *pasvports.Pool { return s.ports }

// Reload replaces users and the certificate from cfg. Sessions go on, except
// those of users removed or whose password, root or write access changed,
// which end with a 421. Listeners and ports are not changed.
func (s *Server) Reload(cfg *config.Config) error {
	tc, err := loadTLS(cfg.TLS, s.cfg.Storage.StateDir)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	if err := s.reloadS3(cfg); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	users, generated, err := newAccounts(cfg.Users)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	if len(generated) > 0 {
		// A generated password nobody sees would lock the user out.
		old := s.users.Load()
		for _, g := range generated {
			if prev, ok := old.byName[g.User]; ok && prev.PasswordHash == "" {
				users.byName[g.User].hash = prev.hash
			}
		}
	}
	prev := s.users.Load()
	s.tlsConf.Store(tc)
	s.users.Store(users)
	revoked := s.revoke(prev, users) // see revoke.go
	s.log.Info("reloaded users and certificate", "users", len(users.byName), "sessions_revoked", revoked)
	return nil
}

// Listeners are bound control sockets that no server serves yet.
type Listeners struct {
	explicit, implicit []net.Listener
}

// Bind opens every configured control listener. Addresses that fail to
// bind make Bind fail as a whole, closing the ones already open.
func Bind(cfg *config.Config) (*Listeners, error) {
	l := &Listeners{}
	var err error
	if l.explicit, err = listenAll(cfg.Server.Listen); err != nil {
		return nil, err
	}
	if l.implicit, err = listenAll(cfg.Server.ImplicitListen); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// listenAll opens a TCP listener on each address, or none: on a failure it
// closes the ones already open.
func listenAll(addrs []string) ([]net.Listener, error) {
	var lns []net.Listener
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			for _, ln := range lns {
				ln.Close()
			}
			return nil, fmt.Errorf("listen on %s: %w", a, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// Close closes listeners that were never served.
func (l *Listeners) Close() {
	for _, ln := range append(l.explicit, l.implicit...) {
		ln.Close()
	}
}

// Serve starts accepting on lns, with fw guarding the passive ports
// (nil: nft.Off). It returns at once; Shutdown stops it. A server serves
// at most once.
func (s *Server) Serve(lns *Listeners, fw nft.Firewall) error {
	if fw == nil {
		fw = nft.Off{}
	}
	ports, err := pasvports.New(s.cfg.Passive.PortMin, s.cfg.Passive.PortMax, fw, s.log)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.ports != nil {
		s.mu.Unlock()
		return errors.New("server already serving")
	}
	ports.SetShare(s.cfg.Passive.MaxPerIP, s.bans.Source)
	s.fw, s.ports = fw, ports
	s.mu.Unlock()
	var roots []string
	for _, u := range s.cfg.Users {
		if u.S3 == nil {
			roots = append(roots, u.Root)
		}
	}
	go sweepParts(roots, time.Now(), s.log)
	go s.sweepUploads(s.cfg.Users)
	go s.releaseMemory()
	for _, set := range []struct {
		lns      []net.Listener
		implicit bool
	}{{lns.explicit, false}, {lns.implicit, true}} {
		for _, ln := range set.lns {
			s.serveListener(ln, set.implicit)
		}
	}
	return nil
}

func (s *Server) serveListener(ln net.Listener, implicit bool) {
	s.mu.Lock()
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	mode := "explicit"
	if implicit {
		mode = "implicit"
	}
	s.log.Info("listening", "address", ln.Addr().String(), "tls", mode)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.acceptLoop(ln, implicit)
	}()
}

// Addrs returns the bound control addresses, explicit ones first.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]net.Addr, len(s.listeners))
	for i, ln := range s.listeners {
		out[i] = ln.Addr()
	}
	return out
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ln := range s.listeners {
		ln.Close()
	}
}

func (s *Server) acceptLoop(ln net.Listener, implicit bool) {
	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Error("accept", "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if s.refuseBanned(conn) {
			continue
		}
		go s.handle(conn, implicit)
	}
}

// admit applies the global limits; it returns a refusal text or "".
// reserved says the max_clients slot is already taken (reserve).
func (s *Server) admit(src netip.Prefix, reserved bool) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	refusal := ""
	switch {
	case s.closing:
		refusal = "Server shutting down"
	case !reserved && s.admitted >= s.cfg.Server.MaxClients:
		refusal = "Too many users, try again later"
	case s.perIP[src] >= s.cfg.Server.MaxClientsPerIP:
		refusal = "Too many connections from your address"
	}
	if refusal != "" {
		if reserved {
			s.admitted--
		}
		return refusal
	}
	if !reserved {
		s.admitted++
	}
	s.perIP[src]++
	return ""
}

// reserve takes a max_clients slot for a connection whose client is not
// known yet (its PROXY header is still to be read); admit completes it,
// unreserve gives it back.
func (s *Server) reserve() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closing:
		return "Server shutting down"
	case s.admitted >= s.cfg.Server.MaxClients:
		return "Too many users, try again later"
	}
	s.admitted++
	return ""
}

func (s *Server) unreserve() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.admitted--
}

// refuse closes a connection the limits refused: over explicit FTPS with a
// 421 saying why, over implicit TLS at once (a refusal there would cost a
// handshake per refused connection, which is what a flood wants).
func (s *Server) refuse(conn net.Conn, implicit bool, client, refusal string) {
	s.log.Warn("connection refused", "client", client, "reason", refusal)
	if !implicit {
		conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "421 %s.\r\n", refusal)
	}
	conn.Close()
}

func (s *Server) handle(conn net.Conn, implicit bool) {
	peer := conn.RemoteAddr().String()
	via := "" // the balancer, for a connection that came through one
	reserved := false
	var sniff *sniffConn
	switch {
	case s.trusted(remoteIP(conn)):
		// See proxy.go: the slot bounds connections waiting for a header.
		if refusal := s.reserve(); refusal != "" {
			s.refuse(conn, implicit, peer, refusal)
			return
		}
		pc, local, refusal := s.readProxyHeader(conn)
		switch {
		case refusal != "":
			s.log.Warn("connection refused", "client", peer, "reason", refusal)
			conn.Close()
			s.unreserve()
			return
		case local:
			s.healthCheck(pc, implicit, peer)
			s.unreserve()
			return
		}
		conn, via, reserved = pc, peer, true
		// The kernel's ban sets saw only the balancer: refuse a banned
		// client here, as the accept loop refuses a banned direct one.
		if s.bannedClient(remoteIP(conn)) {
			s.closeBanned(conn)
			s.unreserve()
			return
		}
	case s.proxyOn():
		sniff = &sniffConn{Conn: conn, timeout: s.headerTimeout(), onHeader: func() {
			s.log.Warn("connection refused", "client", peer, "reason", "PROXY header from an address not in proxy_protocol")
		}}
		conn = sniff
	}
	ip := remoteIP(conn)
	client := conn.RemoteAddr().String()
	conn = &ackConn{Conn: conn}
	src := s.bans.Source(ip)
	if refusal := s.admit(src, reserved); refusal != "" {
		s.refuse(conn, implicit, client, refusal)
		return
	}
	bind, err := s.newBinding()
	if err != nil {
		s.log.Error("connection refused", "client", client, "err", err)
		conn.Close()
		s.leave(src)
		return
	}
	if implicit {
		tconn := tls.Server(conn, &bind.control)
		conn.SetDeadline(time.Now().Add(handshakeTimeout))
		if err := tconn.Handshake(); err != nil {
			if sniff == nil || !sniff.refused { // a refused header was logged as such
				s.observer().TLSFailure("implicit")
				s.log.Warn("TLS handshake failed", "conn", "implicit", "client", client, "reason", tlsReason(err))
			}
			conn.Close()
			s.leave(src)
			return
		}
		conn.SetDeadline(time.Time{})
		conn = tconn
	}
	s.runSession(conn, ip, src, bind, implicit, via)
}

// leave releases what admit took.
func (s *Server) leave(src netip.Prefix) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leaveLocked(src)
}

func (s *Server) leaveLocked(src netip.Prefix) {
	s.admitted--
	if s.perIP[src]--; s.perIP[src] <= 0 {
		delete(s.perIP, src)
	}
}

func (s *Server) register(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessions[sess.id] = sess
	s.peak = max(s.peak, len(s.sessions))
}

func (s *Server) unregister(sess *session) {
	s.mu.Lock()
	delete(s.sessions, sess.id)
	s.leaveLocked(sess.clientKey)
	if s.closing && len(s.sessions) == 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
	s.mu.Unlock()
}

// Sessions is the number of live control connections.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Shutdown stops accepting and closes idle sessions at once; sessions with a
// transfer under way may finish it until ctx is done, then they are closed
// too. Their leases, and so their pinholes, close with them.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	idle := make(chan struct{})
	if len(s.sessions) == 0 {
		close(idle)
	} else {
		s.idle = idle
	}
	s.mu.Unlock()
	s.closeListeners()
	s.wg.Wait()
	s.stopExpireOnce.Do(func() { close(s.stopExpire) })

	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var err error
	for force := false; ; {
		for _, sess := range s.liveSessions() {
			if force || !sess.busy() {
				// In parallel: one session's close may wait on its transfer.
				go sess.close()
			}
		}
		if force {
			break
		}
		select {
		case <-idle:
			return nil
		case <-tick.C:
		case <-ctx.Done():
			err = ctx.Err()
			force = true
		}
	}
	select {
	case <-idle:
	case <-time.After(5 * time.Second):
		s.log.Error("sessions still open after forced close", "count", s.Sessions())
	}
	return err
}

func (s *Server) liveSessions() []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	live := make([]*session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		live = append(live, sess)
	}
	return live
}

func remoteIP(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
