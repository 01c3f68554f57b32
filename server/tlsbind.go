package server

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/sys/unix"
)

// cipherSuites are the TLS 1.2 suites ftpsd offers: forward secrecy (ECDHE)
// and AEAD only. TLS 1.3's suites are all AEAD and not configurable.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// binding is one control connection's TLS: the config for its control
// handshake, and the making of those for its data handshakes, whose tickets
// carry the session's token.
//
// The control config is held by value, in the binding's own allocation: a
// tls.Config on its own falls in the 480-byte size class, the same as a
// goroutine's g, which Go never frees. After a burst of 10,000 sessions every
// g that stayed kept the span of the configs allocated next to it: about
// 10 MB that no collection could return. A data config is made for each
// data connection (dataConfig) and dropped with it: an idle session keeps
// none (464 bytes and three closures less per session).
type binding struct {
	token bindToken
	reuse atomic.Bool // data connections must resume this session: the user's setting once logged in
	// lateHello: a data connection of this session sent no ClientHello
	// before the 150 (lftp, Python's ftplib wait for it). Its next ones are
	// not waited for (see helloPending).
	lateHello atomic.Bool
	user      atomic.Value // string: the logged-in user, for messages
	tickets   *ticketKeys
	base      *tls.Config // the shared config when the session began, for its data configs
	control   tls.Config
}

// newBinding derives the session's control config from the shared one.
func (s *Server) newBinding() (*binding, error) {
	b := &binding{tickets: s.tickets}
	b.reuse.Store(s.cfg.TLS.RequireSessionReuse)
	if _, err := rand.Read(b.token[:]); err != nil {
		return nil, fmt.Errorf("session token: %w", err)
	}
	b.base = s.tlsConf.Load()
	b.control = baseSettings(b.base)
	b.control.WrapSession = b.wrap
	// Resuming any of ftpsd's unexpired tickets on a control connection is
	// fine: the binding is about data connections.
	b.control.UnwrapSession = func(identity []byte, _ tls.ConnectionState) (*tls.SessionState, error) {
		_, ss, err := b.tickets.open(identity)
		if err != nil {
			return nil, nil // not ours or expired: full handshake
		}
		return ss, nil
	}
	return b, nil
}

// dataConfig makes the config for one data connection of this session.
func (b *binding) dataConfig() *tls.Config {
	data := baseSettings(b.base)
	// TLS 1.3 sends its tickets before the client's Finished, so before
	// VerifyConnection below: a refused full handshake would still carry
	// away a ticket bound to this session, to resume it with next time. It
	// gets random bytes instead, which resume nothing. (Failing here would
	// end the handshake without an alert, the client seeing a reset instead
	// of the refusal.)
	data.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		if b.mustResume(cs) != nil {
			void := make([]byte, ticketNameLen+ticketNonceLen+ticketHeadLen+16)
			_, err := rand.Read(void)
			return void, err
		}
		return b.wrap(cs, ss)
	}
	data.UnwrapSession = func(identity []byte, _ tls.ConnectionState) (*tls.SessionState, error) {
		tok, ss, err := b.tickets.open(identity)
		if err != nil || tok != b.token {
			return nil, nil // someone else's session: a full handshake, refused below if reuse is required
		}
		return ss, nil
	}
	// The second line of defence behind the ClientHello check in Accept:
	// also catches a ticket the handshake declined to resume.
	data.VerifyConnection = b.mustResume
	return &data
}

// mustResume refuses a data handshake that did not resume this session,
// unless the user opted out.
func (b *binding) mustResume(cs tls.ConnectionState) error {
	if !cs.DidResume && b.reuse.Load() {
		user, _ := b.user.Load().(string)
		return reuseRefusal(user)
	}
	return nil
}

// baseSettings is what loadTLS sets in the shared config, as a value to
// store in a binding (tls.Config.Clone would allocate it on its own, and
// copy fields ftpsd does not set). A
// setting loadTLS gains must be copied here too; TestBindingKeepsBase fails
// until it is.
func baseSettings(base *tls.Config) tls.Config {
	return tls.Config{
		Certificates: base.Certificates,
		MinVersion:   base.MinVersion,
		CipherSuites: base.CipherSuites,
	}
}

// wrap seals a ticket bound to this session.
func (b *binding) wrap(_ tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	return b.tickets.seal(b.token, ss)
}

var errReuseRequired = errors.New("TLS session reuse required")

// reuseRefusal is what a client whose data connection does not resume its
// control session is told, with the way out.
func reuseRefusal(user string) error {
	return tellingError{fmt.Errorf("%w: the data connection must resume this control connection's TLS session "+
		"(or set require_session_reuse = false for user %q in ftpsd's config)", errReuseRequired, user)}
}

// tellingError is a refusal whose text is meant for the client, which
// replies may carry as it is (driver.Telling).
type tellingError struct{ error }

func (e tellingError) ClientText() string { return e.Error() }
func (e tellingError) Unwrap() error      { return e.error }

// login records who is logged in and whether they must resume.
func (b *binding) login(user string, reuse bool) {
	b.user.Store(user)
	b.reuse.Store(reuse)
}

// helloWait is how long Accept waits for a ClientHello that is not there
// yet before leaving the check to the handshake.
const helloWait = 30 * time.Millisecond

// errNoHello means no byte of a ClientHello arrived within the wait.
var errNoHello = errors.New("no ClientHello yet")

// resumesOwn reads the data connection's ClientHello and reports whether
// it offers a ticket of this control session. The bytes read are returned
// to be replayed to the real handshake. If nothing arrives within wait, it
// returns errNoHello.
func (b *binding) resumesOwn(c *dataConn, keys *ticketKeys, wait time.Duration) ([]byte, bool, error) {
	var first [1]byte
	c.Conn.SetReadDeadline(time.Now().Add(wait))
	n, err := c.Conn.Read(first[:])
	if n == 0 {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, false, errNoHello
		}
		return nil, false, fmt.Errorf("read data connection: %w", err)
	}
	raw, hello, err := readClientHello(io.MultiReader(bytes.NewReader(first[:]), c))
	if err != nil {
		return raw, false, err
	}
	tickets, err := helloTickets(hello)
	if err != nil {
		return raw, false, err
	}
	for _, t := range tickets {
		if tok, _, err := keys.openToken(t); err == nil && tok == b.token {
			return raw, true, nil
		}
	}
	return raw, false, nil
}

// helloPending reports whether the data connection has bytes waiting
// (without reading them), so that a session whose client sends its
// ClientHello only after the 150 does not pay helloWait on every transfer:
// for such a client the check happens in the handshake, as it did for its
// first transfer. Connections it cannot look into count as pending, which
// keeps the wait.
func helloPending(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	pending := true
	err = raw.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, rerr := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		// Data, EOF or a socket error: let resumesOwn read and report it.
		pending = !errors.Is(rerr, unix.EAGAIN)
		return true // never wait here
	})
	return err != nil || pending
}

// maxHello bounds the ClientHello ftpsd reads before the handshake proper.
const maxHello = 1 << 16

// readClientHello reads TLS records from r until one whole handshake
// message (the ClientHello) is in. It returns every byte read and the message.
func readClientHello(r io.Reader) (raw, msg []byte, err error) {
	var hdr [5]byte
	for len(raw) < maxHello {
		if got, err := io.ReadFull(r, hdr[:]); err != nil {
			return append(raw, hdr[:got]...), nil, fmt.Errorf("read TLS record: %w", err)
		}
		raw = append(raw, hdr[:]...)
		if hdr[0] != 22 { // handshake
			return raw, nil, fmt.Errorf("TLS record type %d before the ClientHello", hdr[0])
		}
		n := int(hdr[3])<<8 | int(hdr[4])
		if n == 0 || n > 1<<14+256 {
			return raw, nil, fmt.Errorf("TLS record length %d", n)
		}
		start := len(raw)
		raw = append(raw, make([]byte, n)...)
		if got, err := io.ReadFull(r, raw[start:]); err != nil {
			return raw[:start+got], nil, fmt.Errorf("read TLS record: %w", err)
		}
		msg = append(msg, raw[start:]...)
		if len(msg) >= 4 {
			want := 4 + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]))
			if want > maxHello {
				return raw, nil, fmt.Errorf("ClientHello of %d bytes", want)
			}
			if len(msg) >= want {
				return raw, msg[:want], nil
			}
		}
	}
	return raw, nil, errors.New("ClientHello too long")
}

// TLS extension numbers.
const (
	extSessionTicket = 35 // TLS 1.2 (RFC 5077)
	extPreSharedKey  = 41 // TLS 1.3 (RFC 8446 4.2.11)
)

var errBadHello = errors.New("malformed ClientHello")

// helloTickets returns the tickets a ClientHello offers: TLS 1.3 PSK
// identities and a TLS 1.2 session ticket.
func helloTickets(msg []byte) ([][]byte, error) {
	s := cryptobyte.String(msg)
	var typ uint8
	var body, sessionID, suites, compression, exts cryptobyte.String
	if !s.ReadUint8(&typ) || typ != 1 || !s.ReadUint24LengthPrefixed(&body) || !s.Empty() {
		return nil, errBadHello
	}
	if !body.Skip(2+32) || !body.ReadUint8LengthPrefixed(&sessionID) ||
		!body.ReadUint16LengthPrefixed(&suites) || !body.ReadUint8LengthPrefixed(&compression) {
		return nil, errBadHello
	}
	if body.Empty() {
		return nil, nil // no extensions at all
	}
	if !body.ReadUint16LengthPrefixed(&exts) || !body.Empty() {
		return nil, errBadHello
	}
	var out [][]byte
	for !exts.Empty() {
		var ext uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&ext) || !exts.ReadUint16LengthPrefixed(&data) {
			return nil, errBadHello
		}
		switch ext {
		case extSessionTicket:
			if len(data) > 0 {
				out = append(out, data)
			}
		case extPreSharedKey:
			var ids cryptobyte.String
			if !data.ReadUint16LengthPrefixed(&ids) {
				return nil, errBadHello
			}
			for !ids.Empty() {
				var id cryptobyte.String
				if !ids.ReadUint16LengthPrefixed(&id) || !ids.Skip(4) {
					return nil, errBadHello
				}
				out = append(out, id)
			}
		}
	}
	return out, nil
}

// replayConn hands back bytes already read from Conn before reading more.
type replayConn struct {
	net.Conn
	buf []byte
}

func (r *replayConn) Read(p []byte) (int, error) {
	if len(r.buf) > 0 {
		n := copy(p, r.buf)
		r.buf = r.buf[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}
