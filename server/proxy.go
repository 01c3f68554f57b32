package server

// PROXY protocol ([server] proxy_protocol): behind an L4 balancer the
// control connection's TCP peer is the balancer, and the client's address
// arrives in a PROXY protocol header (v1 or v2) before the FTP dialogue.
// That address is then the session's client everywhere: pinholes, the data
// connection's source check, per-IP limits, bans, logs and xferlog.
//
// Policy, per connection:
//   - from a trusted balancer (a proxy_protocol prefix): a header is
//     required; a missing, late or malformed one refuses the connection;
//   - from anyone else: a direct client, served as without proxy_protocol,
//     unless it opens with a PROXY header, which is refused (a forgery, or
//     a balancer missing from proxy_protocol).
//
// The header is read on the connection's own goroutine (handle), never in
// the accept loop, within proxyHeaderTimeout; while it is read the
// connection holds a max_clients slot, so a balancer that opens
// connections without headers can hold at most max_clients of them, each
// for at most that long.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/ftpsd/ftpsd/nft"
)

// proxyHeaderTimeout bounds the wait for a PROXY header, as a TLS
// handshake is bounded: a balancer sends the header as soon as it has
// connected.
const proxyHeaderTimeout = handshakeTimeout

// proxyOn reports whether PROXY protocol is configured.
func (s *Server) proxyOn() bool { return len(s.cfg.Server.ProxyProtocol) > 0 }

// trusted reports whether a is a balancer allowed to send a PROXY header.
func (s *Server) trusted(a netip.Addr) bool {
	return slices.ContainsFunc(s.cfg.Server.ProxyProtocol, func(p netip.Prefix) bool { return p.Contains(a) })
}

// coversBalancer reports whether a ban of p would catch a trusted balancer.
func (s *Server) coversBalancer(p netip.Prefix) bool {
	return slices.ContainsFunc(s.cfg.Server.ProxyProtocol, p.Overlaps)
}

// headerTimeout is proxyHeaderTimeout unless a test set its own.
func (s *Server) headerTimeout() time.Duration {
	if s.proxyTimeout > 0 {
		return s.proxyTimeout
	}
	return proxyHeaderTimeout
}

// readProxyHeader reads the header a trusted balancer must send first. It
// returns the connection as seen from then on (its RemoteAddr is the
// client's), whether the header was a LOCAL one (the balancer's own
// connection: a health check), or why the connection is refused.
func (s *Server) readProxyHeader(conn net.Conn) (net.Conn, bool, string) {
	// The library's own header timeout turns a timeout into "no header";
	// ftpsd sets the deadline itself so the log can tell the two apart.
	pc := proxyproto.NewConn(conn, proxyproto.WithPolicy(proxyproto.REQUIRE), proxyproto.SetReadHeaderTimeout(0))
	timeout := s.headerTimeout()
	conn.SetReadDeadline(time.Now().Add(timeout))
	hdr := pc.ProxyHeader()
	var err error
	if hdr == nil {
		// The header's error is sticky: Read returns it without reading.
		_, err = pc.Read(nil)
	}
	conn.SetReadDeadline(time.Time{})
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return nil, false, fmt.Sprintf("no PROXY header within %s from a proxy_protocol address", timeout)
	case errors.Is(err, proxyproto.ErrNoProxyProtocol), err == nil && hdr == nil:
		return nil, false, "no PROXY header from a proxy_protocol address (a balancer must send one)"
	case err != nil:
		return nil, false, fmt.Sprintf("invalid PROXY header: %v", err)
	case hdr.Command.IsLocal():
		return pc, true, ""
	}
	src, ok := hdr.SourceAddr.(*net.TCPAddr)
	if !ok || !hdr.TransportProtocol.IsStream() {
		return nil, false, fmt.Sprintf("PROXY header names no TCP client address (address family and protocol 0x%02x)", byte(hdr.TransportProtocol))
	}
	if a, ok := netip.AddrFromSlice(src.IP); !ok || a.Unmap().IsUnspecified() || a.IsMulticast() {
		return nil, false, fmt.Sprintf("PROXY header names an unusable client address %s", src.IP)
	}
	return proxiedConn{pc}, false, ""
}

// proxiedConn is a control connection that came through a balancer: its
// RemoteAddr is the client's, from the header.
type proxiedConn struct{ *proxyproto.Conn }

// LocalAddr is the node's own socket address, not the balancer's frontend
// address from the header: data connections come to the node directly, so
// a PASV without public_host must name the node.
func (c proxiedConn) LocalAddr() net.Addr { return c.Conn.Raw().LocalAddr() }

// healthCheck answers a balancer's own connection (a LOCAL header, as
// HAProxy's check-send-proxy sends): a greeting on the explicit port, for
// checks that expect one, then close; no session, nothing logged.
func (s *Server) healthCheck(conn net.Conn, implicit bool, peer string) {
	s.log.Debug("balancer health check", "balancer", peer)
	if !implicit {
		conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, "220 ftpsd ready\r\n")
	}
	conn.Close()
}

// banLookup is a firewall that knows its bans, including an operator's.
type banLookup interface {
	Banned(netip.Addr) bool
}

// bannedClient reports whether a client named by a PROXY header is banned.
// The kernel's ban sets see only the balancer's address on such a
// connection, so both ftpsd's own bans and the firewall's (which include
// `ftpsd ban add`) are asked here.
func (s *Server) bannedClient(ip netip.Addr) bool {
	if _, banned := s.bans.Banned(ip, time.Now()); banned {
		return true
	}
	if l, ok := firewallAs[banLookup](s.fw); ok {
		return l.Banned(ip)
	}
	return false
}

// firewallAs finds an optional interface behind fw, looking through
// decorators (such as the metrics' timing wrapper) that say what they wrap.
func firewallAs[T any](fw nft.Firewall) (T, bool) {
	for fw != nil {
		if b, ok := fw.(T); ok {
			return b, true
		}
		u, ok := fw.(interface{ Unwrap() nft.Firewall })
		if !ok {
			break
		}
		fw = u.Unwrap()
	}
	var zero T
	return zero, false
}

// sniffConn is a connection from a source not in proxy_protocol while
// PROXY protocol is on: a direct client, served as usual, unless its first
// bytes are a PROXY header. Such a header is never honoured; the
// connection is refused (onHeader logs it, Read reports the end of the
// stream). A direct client waits for the greeting before it sends anything,
// so the check costs it nothing; only bytes that could still become a
// signature ("PRO", "\r\n") are waited on, for at most the header timeout.
type sniffConn struct {
	net.Conn
	timeout  time.Duration
	onHeader func()

	// Read side (one reader at a time).
	decided bool
	refused bool
	buf     []byte // bytes read while deciding, not yet returned

	mu       sync.Mutex
	deadline time.Time // the read deadline the connection's user set
}

// errHeaderRefused ends a connection that sent a PROXY header it may not
// send. It is an io.EOF so that ftpserverlib ends the session quietly:
// onHeader has already logged why.
var errHeaderRefused = fmt.Errorf("PROXY header from a source not in proxy_protocol: %w", io.EOF)

func (c *sniffConn) Read(p []byte) (int, error) {
	if !c.decided {
		if err := c.sniff(); err != nil {
			return 0, err
		}
	}
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *sniffConn) sniff() error {
	buf := make([]byte, 0, len(proxyproto.SIGV2))
	extended := false
	defer func() {
		if extended {
			c.Conn.SetReadDeadline(c.userDeadline())
		}
	}()
	for {
		n, err := c.Conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		match, undecided := headerStart(buf)
		switch {
		case match:
			c.decided, c.refused = true, true
			if c.onHeader != nil {
				c.onHeader()
			}
			return errHeaderRefused
		case len(buf) > 0 && (!undecided || err != nil):
			c.decided, c.buf = true, buf
			return nil
		case err != nil:
			return err // nothing read yet: decide on the next Read
		}
		if !extended {
			extended = true
			d := time.Now().Add(c.timeout)
			if u := c.userDeadline(); !u.IsZero() && u.Before(d) {
				d = u
			}
			c.Conn.SetReadDeadline(d)
		}
	}
}

// headerStart compares the first bytes of a stream with the PROXY
// protocol's v1 and v2 signatures: match when one is complete, undecided
// while the bytes are still the start of one.
func headerStart(b []byte) (match, undecided bool) {
	for _, sig := range [][]byte{proxyproto.SIGV1, proxyproto.SIGV2} {
		n := min(len(b), len(sig))
		if bytes.Equal(b[:n], sig[:n]) {
			if n == len(sig) {
				return true, false
			}
			undecided = true
		}
	}
	return false, undecided
}

func (c *sniffConn) userDeadline() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deadline
}

func (c *sniffConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *sniffConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

// TCPConn returns the socket, for TCP options (quickAck, linger).
func (c *sniffConn) TCPConn() (*net.TCPConn, bool) {
	tc, ok := c.Conn.(*net.TCPConn)
	return tc, ok
}

// tcpConn finds the TCP socket under a control connection.
func tcpConn(c net.Conn) (*net.TCPConn, bool) {
	switch c := c.(type) {
	case *net.TCPConn:
		return c, true
	case interface{ TCPConn() (*net.TCPConn, bool) }:
		return c.TCPConn()
	}
	return nil, false
}
