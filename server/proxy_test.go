package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"golang.org/x/crypto/bcrypt"

	"github.com/ftpsd/ftpsd/config"
	"github.com/ftpsd/ftpsd/nft"
)

// Host loopback only: 127.0.0.1 is the trusted balancer, 127.0.0.2 a direct
// client (every 127/8 address is local on Linux).
const (
	balancerIP = "127.0.0.1"
	directIP   = "127.0.0.2"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type proxyFixture struct {
	s                  *Server
	log                *lockedBuf
	explicit, implicit string
}

// proxyServer runs a server on host loopback that trusts 127.0.0.1 to send
// PROXY headers; set changes the config before it starts.
func proxyServer(t *testing.T, headerTimeout time.Duration, set func(*config.Config)) *proxyFixture {
	t.Helper()
	dir := t.TempDir()
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	cfg := &config.Config{
		Server: config.Server{Listen: []string{balancerIP + ":0"}, ImplicitListen: []string{balancerIP + ":0"},
			MaxClients: 50, MaxClientsPerIP: 10, IdleTimeout: time.Minute, DataTimeout: 5 * time.Second,
			ProxyProtocol: []netip.Prefix{netip.MustParsePrefix(balancerIP + "/32")}},
		TLS:     config.TLS{Require: true, MinVersion: tls.VersionTLS12, RequireSessionReuse: true},
		Passive: config.Passive{PortMin: 50000, PortMax: 50009},
		Storage: config.Storage{StateDir: filepath.Join(dir, "state")},
		Ban:     config.Ban{MaxFailures: 5, Window: time.Minute, Duration: time.Hour, IPv6Prefix: 64},
		Users:   []config.User{{Name: "u", PasswordHash: string(hash), Root: dir}},
	}
	if set != nil {
		set(cfg)
	}
	logs := &lockedBuf{}
	s, _, err := New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s.proxyTimeout = headerTimeout
	lns, err := Bind(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(lns, nft.Off{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The clients' connections are closed by now (their cleanups run
		// first). Let their sessions end by themselves before Shutdown
		// closes what is left: ftpserverlib's clientHandler.Close races with
		// a session's own disconnect (its connClosed flag is unguarded).
		for range 1000 {
			if s.Sessions() == 0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return &proxyFixture{s: s, log: logs, explicit: lns.explicit[0].Addr().String(), implicit: lns.implicit[0].Addr().String()}
}

// dialFrom connects to addr from source address src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// Bounds every read below: a test fails, it never hangs.
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c
}

// header is a PROXY header for a TCP client at client (host:port).
func header(t *testing.T, version byte, client string) []byte {
	t.Helper()
	src := net.TCPAddrFromAddrPort(netip.MustParseAddrPort(client))
	tp := proxyproto.TCPv4
	if src.IP.To4() == nil {
		tp = proxyproto.TCPv6
	}
	dst := &net.TCPAddr{IP: net.ParseIP("203.0.113.1"), Port: 21}
	if tp == proxyproto.TCPv6 {
		dst.IP = net.ParseIP("2001:db8::1")
	}
	h := &proxyproto.Header{Version: version, Command: proxyproto.PROXY, TransportProtocol: tp, SourceAddr: src, DestinationAddr: dst}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// reply reads one (possibly multi-line) reply.
func reply(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	var all []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading reply: %v (so far %q)", err, all)
		}
		all = append(all, strings.TrimRight(line, "\r\n"))
		if len(line) >= 4 && line[3] == ' ' && (len(all) == 1 || strings.HasPrefix(line, all[0][:3])) {
			return strings.Join(all, "\n")
		}
	}
}

func command(t *testing.T, c net.Conn, r *bufio.Reader, cmd string) string {
	t.Helper()
	if _, err := io.WriteString(c, cmd+"\r\n"); err != nil {
		t.Fatal(err)
	}
	return reply(t, r)
}

// greeted reads c's greeting, which must be a 220, and returns the reader
// for what follows.
func greeted(t *testing.T, c net.Conn) *bufio.Reader {
	t.Helper()
	r := bufio.NewReader(c)
	if got := reply(t, r); !strings.HasPrefix(got, "220 ") {
		t.Fatalf("greeting %q", got)
	}
	return r
}

// mustClose expects the server to end the connection without a byte.
func mustClose(t *testing.T, c net.Conn, what string) {
	t.Helper()
	n, err := c.Read(make([]byte, 64))
	var ne net.Error
	if n != 0 || err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: read %d bytes, %v; want the connection closed", what, n, err)
	}
}

// session finds the live session of client ip.
func (f *proxyFixture) session(t *testing.T, ip string) *session {
	t.Helper()
	for range 500 {
		for _, sess := range f.s.liveSessions() {
			if sess.clientIP == netip.MustParseAddr(ip) {
				return sess
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no session for %s", ip)
	return nil
}

func (f *proxyFixture) admitted() int {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	return f.s.admitted
}

// waitLog waits (bounded) for a log line containing all of subs.
func (f *proxyFixture) waitLog(t *testing.T, subs ...string) {
	t.Helper()
	for range 1000 {
		for _, l := range strings.Split(f.log.String(), "\n") {
			ok := true
			for _, s := range subs {
				ok = ok && strings.Contains(l, s)
			}
			if ok {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no log line with %q", subs)
}

// A trusted balancer's header (v1 or v2) makes the header's client the
// session's client; EPSV is refused and not advertised for IPv4 clients
// (PASV names the node), kept for IPv6 ones (PASV cannot name IPv6).
func TestProxyTrustedWithHeader(t *testing.T) {
	f := proxyServer(t, 0, nil)
	for _, tc := range []struct {
		version byte
		client  string
	}{{2, "192.0.2.7:40000"}, {1, "192.0.2.8:40001"}, {2, "[2001:db8::7]:40002"}} {
		c := dialFrom(t, balancerIP, f.explicit)
		if _, err := c.Write(header(t, tc.version, tc.client)); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(c)
		if got := reply(t, r); !strings.HasPrefix(got, "220 ") {
			t.Fatalf("%s: greeting %q", tc.client, got)
		}
		ap := netip.MustParseAddrPort(tc.client)
		sess := f.session(t, ap.Addr().String())
		if !sess.proxied || !sess.clientKey.Contains(ap.Addr()) {
			t.Fatalf("%s: session proxied=%v key=%v", tc.client, sess.proxied, sess.clientKey)
		}
		epsv, feat := command(t, c, r, "EPSV"), command(t, c, r, "FEAT")
		if ap.Addr().Is4() {
			if !strings.HasPrefix(epsv, "502 ") {
				t.Errorf("%s: EPSV through the balancer = %q, want 502", tc.client, epsv)
			}
			if got := command(t, c, r, "EPSV ALL"); !strings.HasPrefix(got, "502 ") {
				t.Errorf("%s: EPSV ALL through the balancer = %q, want 502", tc.client, got)
			}
			if strings.Contains(feat, "EPSV") || !strings.Contains(feat, "MLST") {
				t.Errorf("%s: FEAT through the balancer:\n%s", tc.client, feat)
			}
		} else if strings.HasPrefix(epsv, "502 ") || !strings.Contains(feat, " EPSV") {
			t.Errorf("%s: IPv6 client lost EPSV: %q\n%s", tc.client, epsv, feat)
		}
		f.waitLog(t, "session start", "client="+tc.client, "via="+c.LocalAddr().String())
	}
	if strings.Contains(f.log.String(), "WARN") {
		t.Errorf("warnings for well-behaved connections:\n%s", f.log.String())
	}
}

// A trusted source must send a header: silence until the timeout, or a
// plain FTP command, is refused with one WARN naming the peer and why, and
// gives its max_clients slot back.
func TestProxyTrustedWithoutHeaderRefused(t *testing.T) {
	f := proxyServer(t, 300*time.Millisecond, nil)
	silent := dialFrom(t, balancerIP, f.explicit)
	mustClose(t, silent, "silent balancer connection")
	f.waitLog(t, "WARN", "connection refused", "client="+silent.LocalAddr().String(), "no PROXY header within 300ms")

	plain := dialFrom(t, balancerIP, f.explicit)
	io.WriteString(plain, "USER u\r\n")
	mustClose(t, plain, "balancer connection without header")
	f.waitLog(t, "WARN", "connection refused", "client="+plain.LocalAddr().String(), "no PROXY header from a proxy_protocol address")

	bad := dialFrom(t, balancerIP, f.implicit)
	io.WriteString(bad, "PROXY TCP4 999.0.0.1 10.0.0.1 1 2\r\n")
	mustClose(t, bad, "malformed header")
	f.waitLog(t, "WARN", "connection refused", "client="+bad.LocalAddr().String(), "invalid PROXY header")

	for range 500 {
		if f.admitted() == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := f.admitted(); n != 0 {
		t.Fatalf("%d max_clients slots still held after the refusals", n)
	}
	if n := strings.Count(f.log.String(), "connection refused"); n != 3 {
		t.Errorf("%d refusal lines for 3 refused connections:\n%s", n, f.log.String())
	}
}

// A header from a source not in proxy_protocol is never honoured: the
// connection is refused (explicit and implicit), logged once.
func TestProxyUntrustedHeaderRefused(t *testing.T) {
	f := proxyServer(t, 0, nil)
	c := dialFrom(t, directIP, f.explicit)
	r := greeted(t, c)
	// A forged header naming someone else's address.
	c.Write(header(t, 2, "198.51.100.9:1234"))
	if line, err := r.ReadString('\n'); err == nil {
		t.Fatalf("forged v2 header answered %q", line)
	}
	f.waitLog(t, "WARN", "connection refused", "client="+c.LocalAddr().String(), "PROXY header from an address not in proxy_protocol")

	// v1, split over two writes: still recognised.
	c1 := dialFrom(t, directIP, f.explicit)
	r1 := greeted(t, c1)
	h := header(t, 1, "198.51.100.9:1234")
	c1.Write(h[:3])
	time.Sleep(50 * time.Millisecond)
	c1.Write(h[3:])
	if line, err := r1.ReadString('\n'); err == nil {
		t.Fatalf("forged v1 header answered %q", line)
	}
	f.waitLog(t, "connection refused", "client="+c1.LocalAddr().String())

	ci := dialFrom(t, directIP, f.implicit)
	ci.Write(header(t, 2, "198.51.100.9:1234"))
	mustClose(t, ci, "implicit connection with a forged header")
	f.waitLog(t, "connection refused", "client="+ci.LocalAddr().String(), "PROXY header from an address not in proxy_protocol")
	for _, s := range f.s.liveSessions() {
		if s.clientIP == netip.MustParseAddr("198.51.100.9") {
			t.Fatal("a forged header's address became a session's client")
		}
	}
	if strings.Contains(f.log.String(), "TLS handshake failed") {
		t.Errorf("the refused implicit connection was also logged as a TLS failure:\n%s", f.log.String())
	}
}

// A direct client (not in proxy_protocol, no header) is served as without
// PROXY protocol, EPSV included; a direct client's first command that only
// starts like a signature is passed on whole.
func TestProxyUntrustedWithoutHeaderServed(t *testing.T) {
	f := proxyServer(t, 0, nil)
	c := dialFrom(t, directIP, f.explicit)
	r := greeted(t, c)
	if got := command(t, c, r, "PROT P"); !strings.HasPrefix(got, "503 ") {
		t.Errorf("PROT P before AUTH = %q", got)
	}
	if got := command(t, c, r, "FEAT"); !strings.Contains(got, " EPSV") {
		t.Errorf("FEAT for a direct client has no EPSV:\n%s", got)
	}
	if got := command(t, c, r, "AUTH TLS"); !strings.HasPrefix(got, "234 ") {
		t.Fatalf("AUTH TLS = %q", got)
	}
	sess := f.session(t, directIP)
	if sess.proxied {
		t.Fatal("direct client marked as proxied")
	}
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	tr := bufio.NewReader(tc)
	if got := command(t, tc, tr, "NOOP"); !strings.HasPrefix(got, "200 ") {
		t.Errorf("NOOP over TLS = %q", got)
	}
	// Implicit TLS from a direct client.
	ic := tls.Client(dialFrom(t, directIP, f.implicit), &tls.Config{InsecureSkipVerify: true})
	if got := reply(t, bufio.NewReader(ic)); !strings.HasPrefix(got, "220 ") {
		t.Fatalf("implicit greeting %q", got)
	}
	if strings.Contains(f.log.String(), "connection refused") {
		t.Errorf("a direct client was refused:\n%s", f.log.String())
	}
}

// Header reads happen off the accept loop: balancer connections that
// never send their header (the timeout here is an hour) hold up neither
// other balancer connections nor direct clients.
func TestProxyHeaderWaitDoesNotStallAccept(t *testing.T) {
	f := proxyServer(t, time.Hour, nil)
	for range 5 {
		dialFrom(t, balancerIP, f.explicit)
		dialFrom(t, balancerIP, f.implicit)
	}
	c := dialFrom(t, balancerIP, f.explicit)
	c.Write(header(t, 2, "192.0.2.20:5000"))
	if got := reply(t, bufio.NewReader(c)); !strings.HasPrefix(got, "220 ") {
		t.Fatalf("greeting behind 10 silent connections: %q", got)
	}
	d := dialFrom(t, directIP, f.explicit)
	if got := reply(t, bufio.NewReader(d)); !strings.HasPrefix(got, "220 ") {
		t.Fatalf("direct greeting behind 10 silent connections: %q", got)
	}
	// The silent ones each hold a max_clients slot, nothing more.
	if n := f.admitted(); n != 12 {
		t.Errorf("admitted %d, want 12 (10 waiting for a header, 2 sessions)", n)
	}
}

// A LOCAL header (HAProxy's health checks) gets a greeting on the explicit
// port and is closed, with no session and no warning.
func TestProxyLocalHealthCheck(t *testing.T) {
	f := proxyServer(t, 0, nil)
	local := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL}
	b, err := local.Format()
	if err != nil {
		t.Fatal(err)
	}
	c := dialFrom(t, balancerIP, f.explicit)
	c.Write(b)
	r := bufio.NewReader(c)
	if got := reply(t, r); got != "220 ftpsd ready" {
		t.Fatalf("health check answered %q", got)
	}
	if _, err := r.ReadByte(); err == nil {
		t.Fatal("health check connection stays open")
	}
	ci := dialFrom(t, balancerIP, f.implicit)
	ci.Write([]byte("PROXY UNKNOWN\r\n"))
	mustClose(t, ci, "implicit health check")
	for range 500 {
		if f.admitted() == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if f.admitted() != 0 || f.s.Sessions() != 0 {
		t.Fatalf("health checks left %d admitted, %d sessions", f.admitted(), f.s.Sessions())
	}
	if l := f.log.String(); strings.Contains(l, "WARN") || strings.Contains(l, "ERROR") || strings.Contains(l, "session start") {
		t.Errorf("health checks logged:\n%s", l)
	}
}

// Per-IP limits count the header's client, not the balancer; a banned
// client is refused right after its header.
func TestProxyLimitsAndBansUseHeaderClient(t *testing.T) {
	f := proxyServer(t, 0, func(c *config.Config) { c.Server.MaxClientsPerIP = 2 })
	open := func(client string) (net.Conn, *bufio.Reader) {
		c := dialFrom(t, balancerIP, f.explicit)
		c.Write(header(t, 2, client))
		return c, bufio.NewReader(c)
	}
	for i, client := range []string{"192.0.2.30:1", "192.0.2.30:2", "192.0.2.31:1", "192.0.2.32:1"} {
		_, r := open(client)
		if got := reply(t, r); !strings.HasPrefix(got, "220 ") {
			t.Fatalf("connection %d (%s): %q", i+1, client, got)
		}
	}
	_, r := open("192.0.2.30:3")
	if got := reply(t, r); !strings.HasPrefix(got, "421 Too many connections from your address") {
		t.Fatalf("third connection of one client: %q", got)
	}
	f.waitLog(t, "connection refused", "client=192.0.2.30:3", "Too many connections")

	addBan(f.s, netip.MustParsePrefix("192.0.2.66/32"))
	banned, _ := open("192.0.2.66:7")
	mustClose(t, banned, "banned client through the balancer")
	_, r = open("192.0.2.67:7")
	if got := reply(t, r); !strings.HasPrefix(got, "220 ") {
		t.Fatalf("unbanned neighbour: %q", got)
	}
}

// The sniffer decides on the first bytes and hands them on untouched.
func TestHeaderStart(t *testing.T) {
	for _, tc := range []struct {
		in               string
		match, undecided bool
	}{
		{"", false, true}, {"P", false, true}, {"PRO", false, true}, {"PROXY", true, false}, {"PROXY TCP4", true, false},
		{"PROT P\r\n", false, false}, {"PASV\r\n", false, false}, {"\r\n", false, true}, {"\r\n\r\n\x00\r\nQUIT\n", true, false},
		{"\r\n\r\n\x00\r\nQUI", false, true}, {"\x16\x03\x01", false, false}, {"USER a\r\n", false, false},
	} {
		m, u := headerStart([]byte(tc.in))
		if m != tc.match || u != tc.undecided {
			t.Errorf("headerStart(%q) = %v, %v; want %v, %v", tc.in, m, u, tc.match, tc.undecided)
		}
	}
}

// Failed logins through the balancer count against, and ban, the header's
// client: the balancer itself and other clients behind it go on.
func TestProxyFailedLoginsBanHeaderClient(t *testing.T) {
	f := proxyServer(t, 0, func(c *config.Config) { c.Ban.MaxFailures = 2 })
	// ftpserverlib ends the connection after a failed PASS: one each.
	for i := range 2 {
		c := dialFrom(t, balancerIP, f.explicit)
		c.Write(header(t, 2, fmt.Sprintf("192.0.2.44:%d", 1000+i)))
		r := bufio.NewReader(c)
		reply(t, r)
		if got := command(t, c, r, "AUTH TLS"); !strings.HasPrefix(got, "234 ") {
			t.Fatalf("AUTH TLS = %q", got)
		}
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		tr := bufio.NewReader(tc)
		command(t, tc, tr, "USER u")
		if got := command(t, tc, tr, "PASS wrong"); !strings.HasPrefix(got, "530 ") {
			t.Fatalf("wrong password %d: %q", i+1, got)
		}
	}
	bans := f.s.bans.List(time.Now())
	if len(bans) != 1 || bans[0].Prefix != netip.MustParsePrefix("192.0.2.44/32") {
		t.Fatalf("bans %+v, want the header's client only", bans)
	}
	f.waitLog(t, "msg=ban", "source=192.0.2.44/32")
	again := dialFrom(t, balancerIP, f.explicit)
	again.Write(header(t, 2, "192.0.2.44:1002"))
	mustClose(t, again, "banned client's next connection")
	other := dialFrom(t, balancerIP, f.explicit)
	other.Write(header(t, 2, "192.0.2.45:1000"))
	ro := bufio.NewReader(other)
	if got := reply(t, ro); !strings.HasPrefix(got, "220 ") {
		t.Fatalf("another client behind the same balancer: %q", got)
	}
}

// A ban that covers the balancer's own address (a client on the balancer
// host, or in its IPv6 /64, failing logins) must not cut off the clients
// behind it: the accept loop does not refuse a balancer, the banned client
// is refused after its header, and the ban stays out of the firewall,
// where it would drop the balancer itself.
func TestBanCoveringBalancer(t *testing.T) {
	f := proxyServer(t, 0, func(c *config.Config) { c.Ban.MaxFailures = 2 })
	for i := range 2 {
		c := dialFrom(t, balancerIP, f.explicit)
		c.Write(header(t, 2, fmt.Sprintf("%s:%d", balancerIP, 1000+i)))
		r := bufio.NewReader(c)
		reply(t, r)
		command(t, c, r, "AUTH TLS")
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		tr := bufio.NewReader(tc)
		command(t, tc, tr, "USER u")
		command(t, tc, tr, "PASS wrong")
	}
	if _, banned := f.s.bans.Banned(netip.MustParseAddr(balancerIP), time.Now()); !banned {
		t.Fatal("the failing client was not banned")
	}
	other := dialFrom(t, balancerIP, f.explicit)
	other.Write(header(t, 2, "192.0.2.45:1000"))
	r := bufio.NewReader(other)
	if l := reply(t, r); !strings.HasPrefix(l, "220") {
		t.Fatalf("a client behind the balancer got %q", l)
	}
	banned := dialFrom(t, balancerIP, f.explicit)
	banned.Write(header(t, 2, balancerIP+":2000"))
	banned.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := banned.Read(make([]byte, 64)); n != 0 || err == nil {
		t.Fatalf("the banned client behind the balancer was answered (%d bytes, %v)", n, err)
	}

	fw := &banFW{}
	s := banServer(t, fw)
	s.cfg.Server.ProxyProtocol = []netip.Prefix{netip.MustParsePrefix("2001:db8:1::5/128")}
	addBan(s, netip.MustParsePrefix("2001:db8:1::/64"))
	addBan(s, netip.MustParsePrefix("2001:db8:2::/64"))
	if len(fw.bans) != 1 || fw.bans[0] != netip.MustParsePrefix("2001:db8:2::/64") {
		t.Fatalf("firewall bans %v, want only the one that spares the balancer", fw.bans)
	}
}
