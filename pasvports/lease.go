package pasvports

import (
	"errors"
	"net"
	"net/netip"
	"sync"
)

// Lease is one passive data socket: a listener bound to a leased port with a
// pinhole open for one client until that client's first connection arrives.
//
// The lease accepts eagerly, from the moment it exists, rather than when
// ftpserverlib gets to Accept (which happens only at the transfer command):
// so the pinhole closes as soon as the client's connection is in, and any
// later connection, even from the same address (a NAT neighbour), is
// dropped by the kernel instead of queueing behind it.
type Lease struct {
	net.Listener
	pool   *Pool
	client netip.Addr
	src    netip.Prefix // client's source, whose share the lease counts against
	port   uint16
	label  string

	// holeMu is held across the netlink delete, so that the port is not
	// released (and re-leased to the same client) while the delete of the
	// old element is still in flight.
	holeMu   sync.Mutex
	holeOpen bool

	mu     sync.Mutex
	ready  chan struct{} // closed once result is set
	result struct {
		conn net.Conn
		err  error
	}
	taken     bool
	closed    bool
	closeOnce sync.Once
}

func newLease(ln net.Listener, p *Pool, client netip.Addr, src netip.Prefix, port uint16, label string) *Lease {
	l := &Lease{Listener: ln, pool: p, client: client, src: src, port: port, label: label, holeOpen: true, ready: make(chan struct{})}
	go l.take()
	return l
}

// Port is the leased port.
func (l *Lease) Port() uint16 { return l.port }

// Client is the only address the lease admits.
func (l *Lease) Client() netip.Addr { return l.client }

// take accepts the client's connection (closing and logging connections
// from any other address: with the firewall on the kernel already drops
// them, with it off this keeps a stranger from taking the transfer), then
// closes the pinhole. A lease whose client did not come within its deadline
// ends itself, so that a client cannot hold ports with replies it never uses.
func (l *Lease) take() {
	var (
		conn net.Conn
		err  error
	)
	for {
		conn, err = l.Listener.Accept()
		if err != nil {
			break
		}
		if from := remoteIP(conn); from != l.client {
			l.pool.log.Warn("data connection from a foreign address refused",
				"port", l.port, "from", from.String(), "expected", l.client.String(), "lease", l.label)
			conn.Close()
			continue
		}
		break
	}
	l.closeHole()
	l.mu.Lock()
	if l.closed && conn != nil {
		conn.Close()
		conn = nil
		err = net.ErrClosed
	}
	l.result.conn, l.result.err = conn, err
	l.mu.Unlock()
	close(l.ready)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		l.Close()
	}
}

// Accept hands over the client's connection once it has arrived, or the
// error that ended the wait (deadline, Close). It succeeds at most once.
func (l *Lease) Accept() (net.Conn, error) {
	<-l.ready
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.taken {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: net.ErrClosed}
	}
	l.taken = true
	return l.result.conn, l.result.err
}

// Close ends the lease: pinhole removed (if still open), port returned to
// the pool, socket closed, an arrived but untaken connection closed. Safe to
// call more than once and concurrently with Accept; every call returns only
// once the lease is fully ended.
func (l *Lease) Close() error {
	l.closeOnce.Do(l.end)
	return nil
}

func (l *Lease) end() {
	l.mu.Lock()
	l.closed = true
	var pending net.Conn
	if !l.taken && l.result.conn != nil {
		pending = l.result.conn
		l.result.conn, l.result.err = nil, net.ErrClosed
	}
	l.mu.Unlock()
	if pending != nil {
		pending.Close()
	}
	l.closeHole()
	// The port goes back before the socket closes: until then a session
	// that draws it fails to bind and tries its next candidate, whereas the
	// other order would let it bind a port the pool still counts as leased.
	l.pool.release(l.port)
	l.pool.untake(l.src)
	if err := l.Listener.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		l.pool.log.Warn("close passive listener", "port", l.port, "err", err)
	}
}

func (l *Lease) closeHole() {
	l.holeMu.Lock()
	defer l.holeMu.Unlock()
	if !l.holeOpen {
		return
	}
	l.holeOpen = false
	if err := l.pool.fw.Close(l.client, l.port); err != nil {
		// The element still expires by its timeout; say so loudly all the same.
		l.pool.log.Error("close pinhole", "client", l.client.String(), "port", l.port, "err", err)
	}
}

func remoteIP(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
