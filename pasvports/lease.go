package pasvports

import (
	"net"
	"net/netip"
	"sync"
)

// Lease is one passive data socket: a listener bound to a leased port with a
// pinhole open for one client until the first data connection arrives.
type Lease struct {
	net.Listener
	pool   *Pool
	client netip.Addr
	port   uint16
	label  string

	mu       sync.Mutex
	holeOpen bool
	closed   bool
}

// Port is the leased port.
func (l *Lease) Port() uint16 { return l.port }

// Client is the only address the lease admits.
func (l *Lease) Client() netip.Addr { return l.client }

// Accept returns the first connection from the lease's client. Connections
// from any other address are closed and logged (with the firewall on, the
// kernel already drops them; with it off this keeps a stranger from taking
// the transfer). The pinhole closes as soon as the client's connection is
// taken, or when accepting fails (deadline), so that it is used at most once.
func (l *Lease) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			l.closeHole()
			return nil, err
		}
		from := remoteIP(conn)
		if from != l.client {
			l.pool.log.Warn("data connection from a foreign address refused",
				"port", l.port, "from", from.String(), "expected", l.client.String(), "lease", l.label)
			conn.Close()
			continue
		}
		l.closeHole()
		return conn, nil
	}
}

// Close ends the lease: pinhole removed (if still open), socket closed, port
// returned to the pool. Safe to call more than once.
func (l *Lease) Close() error {
	l.closeHole()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	err := l.Listener.Close()
	l.pool.release(l.port)
	return err
}

func (l *Lease) closeHole() {
	l.mu.Lock()
	open := l.holeOpen
	l.holeOpen = false
	l.mu.Unlock()
	if !open {
		return
	}
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
