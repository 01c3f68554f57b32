package server

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ftpsd/ftpsd/pasvports"
)

// oneShot is the Settings.Listener of a session's embedded server: it hands
// out the session's control connection once, then blocks until closed.
// ftpserverlib's Serve returns nil only for an accept error that reads
// "use of closed network connection", hence net.ErrClosed.
type oneShot struct {
	conn   net.Conn
	handed atomic.Bool
	done   chan struct{}
	once   sync.Once
}

func newOneShot(c net.Conn) *oneShot {
	return &oneShot{conn: c, done: make(chan struct{})}
}

func (o *oneShot) Accept() (net.Conn, error) {
	if o.handed.CompareAndSwap(false, true) {
		select {
		case <-o.done:
		default:
			return o.conn, nil
		}
	}
	<-o.done
	return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: o.conn.LocalAddr(), Err: net.ErrClosed}
}

func (o *oneShot) Close() error {
	o.once.Do(func() { close(o.done) })
	return nil
}

func (o *oneShot) Addr() net.Addr { return o.conn.LocalAddr() }

// dataListener is a lease seen from the session: it remembers the accepted
// data connection so that the end of an upload can be judged.
type dataListener struct {
	*pasvports.Lease
	sess *session
}

func (d *dataListener) Accept() (net.Conn, error) {
	c, err := d.Lease.Accept()
	if err != nil {
		return nil, err
	}
	dc := &dataConn{Conn: c, idle: d.sess.srv.cfg.Server.DataTimeout}
	d.sess.mu.Lock()
	d.sess.data = dc
	cc, user := d.sess.cc, d.sess.user
	d.sess.mu.Unlock()
	if cc == nil || !cc.HasTLSForTransfers() || !d.sess.bind.reuse.Load() {
		return dc, nil
	}
	// Most clients start the data handshake as soon as they connect; their
	// ClientHello is checked here, before ftpserverlib's "150", so a refusal
	// is a 425 that says why. Others (Python's ftplib) wait for the 150:
	// for them the check happens in the handshake itself (the data config's
	// VerifyConnection), and ftpserverlib reports it as a 550 with the same text.
	// (Upstream, ftpserverlib could run the data handshake itself before its
	// 150, as it wraps the listener in tls.NewListener anyway; every refusal
	// would then be a 4xx.)
	raw, ok, err := d.sess.bind.resumesOwn(dc, d.sess.srv.tickets, helloWait)
	switch {
	case errors.Is(err, errNoHello):
		return &replayConn{Conn: dc, buf: raw}, nil
	case err != nil || !ok:
		dc.Close()
		d.sess.log.Warn("data connection refused: it does not resume the control connection's TLS session",
			"user", user, "err", err)
		return nil, reuseRefusal(user)
	}
	return &replayConn{Conn: dc, buf: raw}, nil
}

// dataConn notes whether the raw TCP stream reached EOF. Under TLS, a peer
// that ends cleanly sends close_notify, and crypto/tls reports io.EOF after
// reading that alert without reading the socket again; only a stream cut
// without close_notify makes the raw socket itself return EOF.
//
// It also bounds every read and write by data_timeout: ftpserverlib sets no
// deadline on data connections, so a peer that stalls mid-handshake or
// mid-transfer would otherwise hold the session's transfer forever. (Not
// idle_timeout: ftpserverlib's control deadline covers writes too, and if
// both fired together the error reply would be cut mid-record.)
type dataConn struct {
	net.Conn
	idle   time.Duration
	rawEOF atomic.Bool
	closed atomic.Bool
}

func (d *dataConn) Read(p []byte) (int, error) {
	if d.idle > 0 {
		d.Conn.SetReadDeadline(time.Now().Add(d.idle))
	}
	n, err := d.Conn.Read(p)
	if errors.Is(err, io.EOF) {
		d.rawEOF.Store(true)
	}
	return n, err
}

func (d *dataConn) Write(p []byte) (int, error) {
	if d.idle > 0 {
		d.Conn.SetWriteDeadline(time.Now().Add(d.idle))
	}
	return d.Conn.Write(p)
}

func (d *dataConn) Close() error {
	d.closed.Store(true)
	return d.Conn.Close()
}
