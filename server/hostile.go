package server

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"time"

	"github.com/ftpsd/ftpsd/ban"
)

// Banner is a firewall that can drop a banned source's new connections in
// the kernel. The server hands every ban it decides to its firewall if the
// firewall implements Banner; the accept loop refuses banned sources itself
// in any case, so bans hold with [firewall] mode = "off" too.
type Banner interface {
	Ban(prefix netip.Prefix, d time.Duration, reason string) error
}

// hashWait bounds how long a login waits for its turn at bcrypt.
const hashWait = 30 * time.Second

// expireEvery is how often expired bans and failure counts are forgotten.
const expireEvery = time.Minute

func newBanState(s *Server) {
	b := s.cfg.Ban
	s.bans = ban.New(ban.Config{MaxFailures: b.MaxFailures, Window: b.Window, Duration: b.Duration,
		Allow: b.Allow, IPv6Prefix: b.IPv6Prefix})
	s.gate = ban.NewGate(runtime.GOMAXPROCS(0))
	s.stopExpire = make(chan struct{})
	go func() {
		t := time.NewTicker(expireEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				s.bans.Expire(time.Now())
			case <-s.stopExpire:
				return
			}
		}
	}()
}

// refuseBanned closes a connection from a banned source at once, in the
// accept loop: no goroutine, no TLS, no reply. Linger 0 makes the close an
// RST, so the socket leaves no TIME_WAIT behind either. A balancer's
// connections are never refused here, even when a ban covers its address:
// the client each one carries is checked once its PROXY header is read.
func (s *Server) refuseBanned(conn net.Conn) bool {
	ip := remoteIP(conn)
	if s.proxyOn() && s.trusted(ip) {
		return false
	}
	if _, banned := s.bans.Banned(ip, time.Now()); !banned {
		return false
	}
	s.closeBanned(conn)
	return true
}

// closeBanned closes a banned source's connection with an RST.
func (s *Server) closeBanned(conn net.Conn) {
	if tc, ok := tcpConn(conn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

// failure counts a hostile event from sess's client. It returns how long
// the reply should be held back; when the event decides a ban, the ban is
// enforced before failure returns.
func (sess *session) failure(weight int, what string) time.Duration {
	s := sess.srv
	delay, b := s.bans.Fail(sess.clientIP, weight, what, time.Now())
	if b != nil {
		s.enforceBan(*b, fmt.Sprintf("%s (%d failed logins' worth within %s)", what, s.cfg.Ban.MaxFailures, s.cfg.Ban.Window), sess)
	}
	return delay
}

// enforceBan logs the ban once, hands it to the firewall if it can hold
// bans, and closes the source's open sessions except cause, the session
// whose failure decided the ban: ftpserverlib ends that one itself after
// its 530 (a failed PASS disconnects), and closing it from here as well
// would race with that disconnect (ftpserverlib's clientHandler.disconnect
// is not safe for concurrent calls) and cut the 530.
func (s *Server) enforceBan(b ban.Ban, reason string, cause *session) {
	d := time.Until(b.Until).Round(time.Second)
	s.log.Warn("ban", "source", b.Prefix.String(), "reason", reason, "duration", d.String())
	if s.coversBalancer(b.Prefix) {
		// In the kernel it would drop the balancer, and with it every
		// client behind it; ftpsd refuses the banned clients after their
		// PROXY header instead.
		s.log.Warn("ban kept out of the firewall: it covers a proxy_protocol balancer; its clients are refused after the PROXY header",
			"source", b.Prefix.String())
	} else if fb, ok := firewallAs[Banner](s.fw); ok {
		if err := fb.Ban(b.Prefix, d, reason); err != nil {
			s.log.Error("firewall ban failed; the accept loop still refuses the source", "source", b.Prefix.String(), "err", err)
		}
	}
	for _, sess := range s.liveSessions() {
		if sess != cause && b.Prefix.Contains(sess.clientIP) {
			go sess.close()
		}
	}
}

// tarpit holds back a failure's reply for d, or until the session closes.
// The session's goroutine is parked on a timer meanwhile: no CPU, and the
// source's connections are already capped by max_clients_per_ip.
func (sess *session) tarpit(d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-sess.closing:
	}
}

// checkLogin verifies a password under the fair bcrypt gate: one hash per
// source at a time, sources taking turns, so a brute force cannot take the
// CPU that other users' logins need.
func (sess *session) checkLogin(user, pass string) (*account, error) {
	release, err := sess.srv.gate.Acquire(sess.clientKey, hashWait)
	if err != nil {
		return nil, errors.New("server busy, try again")
	}
	defer release()
	// A ban decided while this login queued: no hash for a banned source.
	if _, banned := sess.srv.bans.Banned(sess.clientIP, time.Now()); banned {
		return nil, errBadLogin
	}
	return sess.srv.users.Load().check(user, pass)
}
