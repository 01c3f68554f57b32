package server

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"
	"weak"

	"github.com/ftpsd/ftpsd/config"
)

// tlsServer is just enough of a Server for the TLS binding.
func tlsServer(t testing.TB) *Server {
	t.Helper()
	tc, err := loadTLS(config.TLS{}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: &config.Config{TLS: config.TLS{RequireSessionReuse: true}}}
	s.tlsConf.Store(tc)
	if s.tickets, err = newTicketKeys(time.Now); err != nil {
		t.Fatal(err)
	}
	return s
}

// recorder keeps what the client sent.
type recorder struct {
	net.Conn
	sent bytes.Buffer
}

func (r *recorder) Write(p []byte) (int, error) { r.sent.Write(p); return r.Conn.Write(p) }

// handshake runs one client/server handshake over a pipe and returns the
// server's connection state, its error, and the client's first flight.
func handshake(t testing.TB, client, server *tls.Config) (tls.ConnectionState, error, []byte) {
	t.Helper()
	a, b := tcpPair(t)
	rec := &recorder{Conn: a}
	cc, sc := tls.Client(rec, client), tls.Server(b, server)
	errc := make(chan error, 1)
	go func() {
		err := cc.Handshake()
		if err == nil {
			// TLS 1.3 tickets arrive after the handshake: read to take them in.
			cc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			cc.Read(make([]byte, 1))
		}
		errc <- err
	}()
	sc.SetDeadline(time.Now().Add(5 * time.Second))
	err := sc.Handshake()
	if err == nil {
		sc.Write([]byte("x")) // lets the client read past the tickets
	} else {
		b.Close() // the client may be blocked writing its next flight
	}
	<-errc
	cs := sc.ConnectionState()
	a.Close()
	b.Close()
	return cs, err, rec.sent.Bytes()
}

func clientConf(version uint16) *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, ServerName: "ftpsd.test",
		ClientSessionCache: tls.NewLRUClientSessionCache(4), MinVersion: version, MaxVersion: version}
}

func TestDataMustResumeOwnControlSession(t *testing.T) {
	s := tlsServer(t)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			own, err := s.newBinding()
			if err != nil {
				t.Fatal(err)
			}
			other, _ := s.newBinding()
			client := clientConf(v)
			if _, err, _ := handshake(t, client, &own.control); err != nil {
				t.Fatalf("control handshake: %v", err)
			}
			// A full handshake on the data connection is refused.
			refused := clientConf(v)
			if _, err, hello := handshake(t, refused, own.dataConfig()); !errors.Is(err, errReuseRequired) {
				t.Fatalf("full data handshake: %v, want refusal", err)
			} else if _, ok, err := own.resumesOwn(helloConn(hello), s.tickets, time.Second); ok || err != nil {
				t.Fatalf("ClientHello check of a full handshake: %v %v", ok, err)
			}
			// Also the next time: TLS 1.3 sends its tickets before the
			// refusal, and the refused client must not have carried
			// away one that resumes this session.
			if _, err, _ := handshake(t, refused, own.dataConfig()); !errors.Is(err, errReuseRequired) {
				t.Fatalf("data handshake after a refused one: %v, want refusal", err)
			}
			// Resuming its own control session passes, before and in the handshake.
			cs, err, hello := handshake(t, client, own.dataConfig())
			if err != nil || !cs.DidResume {
				t.Fatalf("resumed data handshake: %v (resumed %v)", err, cs.DidResume)
			}
			if _, ok, err := own.resumesOwn(helloConn(hello), s.tickets, time.Second); !ok || err != nil {
				t.Fatalf("ClientHello check of its own ticket: %v %v", ok, err)
			}
			writeSeed(t, "FuzzHelloTickets", hello)
			// The same ticket on another session's data connection is refused.
			if _, ok, _ := other.resumesOwn(helloConn(hello), s.tickets, time.Second); ok {
				t.Fatal("another session's ClientHello check accepted the ticket")
			}
			if _, err, _ := handshake(t, client, other.dataConfig()); !errors.Is(err, errReuseRequired) {
				t.Fatalf("another session's ticket: %v, want refusal", err)
			}
			// Opting out lets a full handshake through.
			other.login("bob", false)
			if _, err, _ := handshake(t, clientConf(v), other.dataConfig()); err != nil {
				t.Fatalf("full handshake with reuse off: %v", err)
			}
			if !strings.Contains(reuseRefusal("alice").Error(), `require_session_reuse = false for user "alice"`) {
				t.Error("the refusal does not say how to turn it off")
			}
		})
	}
}

// tcpPair is a connected loopback pair: buffered, unlike net.Pipe, so a
// side that gives up does not leave the other blocked in a write.
func tcpPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

// helloConn serves recorded client bytes as a data connection.
func helloConn(b []byte) *dataConn {
	a, c := net.Pipe()
	go func() { c.Write(b); c.Close() }()
	return &dataConn{Conn: a, idle: time.Second}
}

// writeSeed stores a captured input in the fuzz seed corpus when
// FTPSD_WRITE_SEEDS is set (how the committed seeds were made).
func writeSeed(t *testing.T, fuzz string, b []byte) {
	if os.Getenv("FTPSD_WRITE_SEEDS") == "" {
		return
	}
	dir := filepath.Join("testdata", "fuzz", fuzz)
	os.MkdirAll(dir, 0o755)
	name := filepath.Join(dir, strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()))
	if err := os.WriteFile(name, fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestTicketsExpireAndRotate(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	k, err := newTicketKeys(func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	tok := bindToken{1, 2, 3}
	ss := sessionState(t)
	ticket, err := k.seal(tok, ss)
	if err != nil {
		t.Fatal(err)
	}
	if got, _, err := k.open(ticket); err != nil || got != tok {
		t.Fatalf("open fresh ticket: %v %v", got, err)
	}
	// One rotation later, the previous key still opens it.
	now = now.Add(ticketRotate + time.Minute)
	if _, _, err := k.open(ticket); err != nil {
		t.Fatalf("after one rotation: %v", err)
	}
	// Tampering is detected.
	bad := bytes.Clone(ticket)
	bad[len(bad)-1] ^= 1
	if _, _, err := k.open(bad); err == nil {
		t.Fatal("tampered ticket opened")
	}
	// A day after issue it is gone, whatever the keys.
	now = now.Add(ticketLifetime)
	if _, _, err := k.open(ticket); err == nil {
		t.Fatal("ticket older than a day opened")
	}
	// And a ticket from another process's keys never opens.
	k2, _ := newTicketKeys(func() time.Time { return now })
	t2, _ := k2.seal(tok, ss)
	if _, _, err := k.open(t2); err == nil {
		t.Fatal("a foreign key's ticket opened")
	}
}

// sessionState gets a real *tls.SessionState from a handshake.
func sessionState(t testing.TB) *tls.SessionState {
	t.Helper()
	s := tlsServer(t)
	var got *tls.SessionState
	conf := s.tlsConf.Load().Clone()
	conf.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		got = ss
		return conf.EncryptTicket(cs, ss)
	}
	if _, err, _ := handshake(t, clientConf(tls.VersionTLS13), conf); err != nil || got == nil {
		t.Fatalf("handshake: %v (session %v)", err, got)
	}
	return got
}

// helloPending looks without reading and without waiting: a client that
// sends its ClientHello only after the 150 must not cost every transfer
// helloWait.
func TestHelloPending(t *testing.T) {
	a, b := tcpPair(t)
	defer a.Close()
	defer b.Close()
	if helloPending(b) {
		t.Fatal("nothing sent, but reported pending")
	}
	if _, err := a.Write([]byte{22}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !helloPending(b) {
		if time.Now().After(deadline) {
			t.Fatal("a byte sent, but never reported pending")
		}
		time.Sleep(time.Millisecond)
	}
	// Peeked, not consumed: the check that follows still reads it.
	var got [1]byte
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := b.Read(got[:]); n != 1 || got[0] != 22 {
		t.Fatalf("read after peek: %d %v %v", n, got, err)
	}
	// A peer that hung up counts as pending, so that its EOF is reported.
	a.Close()
	for !helloPending(b) {
		if time.Now().After(deadline) {
			t.Fatal("EOF never reported pending")
		}
		time.Sleep(time.Millisecond)
	}
	// What it cannot look into keeps the wait.
	p, q := net.Pipe()
	defer p.Close()
	defer q.Close()
	if !helloPending(p) {
		t.Fatal("a pipe must count as pending")
	}
}

// The per-session configs are copies of the shared one made field by field
// (baseSettings): every setting loadTLS makes must reach them.
func TestBindingKeepsBase(t *testing.T) {
	s := tlsServer(t)
	tc, err := loadTLS(config.TLS{MinVersion: tls.VersionTLS13}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s.tlsConf.Store(tc)
	b, err := s.newBinding()
	if err != nil {
		t.Fatal(err)
	}
	base := reflect.ValueOf(tc).Elem()
	typ := base.Type()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !f.IsExported() || base.Field(i).IsZero() {
			continue
		}
		for name, c := range map[string]*tls.Config{"control": &b.control, "data": b.dataConfig()} {
			got, want := reflect.ValueOf(c).Elem().Field(i), base.Field(i)
			same := reflect.DeepEqual(got.Interface(), want.Interface())
			if want.Kind() == reflect.Func {
				same = got.Pointer() == want.Pointer()
			}
			if !same {
				t.Errorf("%s config: %s = %v, the shared config has %v (copy it in baseSettings)", name, f.Name, got, want)
			}
		}
	}
	data := b.dataConfig()
	if b.control.WrapSession == nil || b.control.UnwrapSession == nil || data.WrapSession == nil ||
		data.UnwrapSession == nil || data.VerifyConnection == nil {
		t.Error("a binding callback is missing")
	}
}

// An idle session's binding holds one tls.Config, its control one: data
// configs are made per data connection. (Two configs per binding were
// 1 KiB per idle session.)
func TestBindingHoldsOneConfig(t *testing.T) {
	size, one := unsafe.Sizeof(binding{}), unsafe.Sizeof(tls.Config{})
	t.Logf("binding: %d bytes, tls.Config: %d", size, one)
	if size >= 2*one {
		t.Errorf("a binding is %d bytes, a tls.Config %d: it holds more than the control config", size, one)
	}
	// Nor does it keep one by reference: once a data connection is done
	// with its config, the config is garbage while the session lives on.
	b, err := tlsServer(t).newBinding()
	if err != nil {
		t.Fatal(err)
	}
	data := weak.Make(b.dataConfig())
	if b.dataConfig() == data.Value() {
		t.Error("two data connections share one config: the binding keeps it")
	}
	runtime.GC()
	if data.Value() != nil {
		t.Error("a data connection's config outlived the connection: the binding keeps it")
	}
	runtime.KeepAlive(b)
}
