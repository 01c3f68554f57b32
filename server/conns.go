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
// out the session's control connection once, then reports itself closed.
// ftpserverlib's Serve returns nil only for an accept error that reads
// "use of closed network connection", hence net.ErrClosed. Serve returns
// as soon as the connection is handed over (ftpserverlib runs the session
// on a goroutine of its own), so a session holds one goroutine, not two:
// at 10,000 idle sessions that is 10,000 stacks fewer.
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
	d.sess.mu.Unlock()
	return dc, nil
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
	read   int64 // bytes read so far; only the reading goroutine uses it
}

func (d *dataConn) Read(p []byte) (int, error) {
	if d.idle > 0 {
		d.Conn.SetReadDeadline(time.Now().Add(d.idle))
	}
	if d.read < quickAckBytes {
		quickAck(d.Conn)
	}
	n, err := d.Conn.Read(p)
	d.read += int64(n)
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
