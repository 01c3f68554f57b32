package server

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
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
	dc := &dataConn{Conn: c, idle: d.sess.srv.cfg.Server.DataTimeout, tls: d.sess.protP.Load()}
	d.sess.mu.Lock()
	d.sess.data = dc
	user := d.sess.user
	d.sess.mu.Unlock()
	// Data TLS is ftpsd's, like control TLS (see ctlConn): ftpserverlib
	// never saw PROT P.
	var conn net.Conn = dc
	if dc.tls {
		if d.sess.bind.reuse.Load() {
			// Most clients start the data handshake as soon as they
			// connect; their ClientHello is checked here, before the 150,
			// so a refusal is a 425 that says why. Others (Python's ftplib)
			// wait for the 150: for them the check happens in the handshake
			// itself (the data config's VerifyConnection).
			// A client that waited for the 150 once is not waited for
			// again unless its hello is already there (helloPending).
			var raw []byte
			ok, err := false, errNoHello
			if !d.sess.bind.lateHello.Load() || helloPending(dc.Conn) {
				raw, ok, err = d.sess.bind.resumesOwn(dc, d.sess.srv.tickets, helloWait)
			}
			if errors.Is(err, errNoHello) {
				d.sess.bind.lateHello.Store(true)
			}
			if !errors.Is(err, errNoHello) && (err != nil || !ok) {
				dc.Close()
				d.sess.log.Warn("data connection refused: it does not resume the control connection's TLS session",
					"user", user, "err", err)
				return nil, reuseRefusal(user)
			}
			conn = &replayConn{Conn: dc, buf: raw}
		}
		cfg, err := d.sess.GetTLSConfig()
		if err != nil {
			dc.Close()
			return nil, err
		}
		conn = tls.Server(conn, cfg)
	}
	switch d.sess.listing.Load() {
	case mlsdListing:
		conn = &lineConn{Conn: conn, rewrite: d.sess.mlsdEntry}
	case listListing:
		conn = &lineConn{Conn: conn, rewrite: d.sess.listEntry}
	}
	return conn, nil
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
	tls    bool // TLS runs on top (PROT P)
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

// lineConn carries one listing and rewrites each CRLF-terminated line on
// its way to the client: ftpserverlib v0.32.3 has no hook for the facts of
// an MLSD entry (upstream: an MLSx fact callback on the driver) nor for
// LIST's owner and group (listowners.go).
type lineConn struct {
	net.Conn
	rewrite func(string) string
	lines   lineBuf
}

func (l *lineConn) Write(p []byte) (int, error) {
	out := l.lines.feed(p, l.rewrite)
	// An empty write still matters: ftpserverlib sends one for an empty
	// listing, and over TLS it is what runs the handshake.
	if len(out) > 0 || len(p) == 0 {
		if _, err := l.Conn.Write(out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// lineBuf cuts a written stream into CRLF-terminated lines, keeping an
// unfinished one for the next write.
type lineBuf struct{ partial []byte }

// feed adds p and returns every line it completes, passed through rewrite,
// CRLFs included.
func (b *lineBuf) feed(p []byte, rewrite func(string) string) []byte {
	b.partial = append(b.partial, p...)
	var out []byte
	for {
		i := bytes.Index(b.partial, []byte("\r\n"))
		if i < 0 {
			break
		}
		out = append(out, rewrite(string(b.partial[:i]))...)
		out = append(out, "\r\n"...)
		b.partial = b.partial[i+2:]
	}
	if len(b.partial) == 0 {
		b.partial = nil
	}
	return out
}

func (l *lineConn) Close() error {
	if len(l.lines.partial) > 0 {
		l.Conn.Write(l.lines.partial)
		l.lines.partial = nil
	}
	return l.Conn.Close()
}

// mlsdEntry rewrites "Type=..;Size=..;Modify=..; name" with the session's
// facts (factsLine). Entries are matched by name with the driver's ReadDir
// that produced the listing.
func (sess *session) mlsdEntry(line string) string {
	_, name, ok := strings.Cut(line, " ")
	fs := sess.driver()
	if !ok || fs == nil {
		return line
	}
	fi, ok := fs.Listed(name)
	if !ok {
		return line
	}
	return factsLine(fi, fs.ReadOnly(), sess.facts(), name)
}
