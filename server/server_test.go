package server

import (
	"errors"
	"net"
	"testing"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"
	"golang.org/x/crypto/bcrypt"

	"github.com/ftpsd/ftpsd/config"
	"github.com/ftpsd/ftpsd/nft"
	"github.com/ftpsd/ftpsd/pasvports"
)

// The one-shot listener must make ftpserverlib's Serve return nil as soon
// as it has handed over the connection (the session then runs on
// ftpserverlib's own goroutine, and no second goroutine waits per session):
// Serve treats only "use of closed network connection" as a normal stop.
func TestOneShotEndsServeCleanly(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	o := newOneShot(a)
	c, err := o.Accept()
	if err != nil || c != a {
		t.Fatalf("first Accept = %v, %v", c, err)
	}
	done := make(chan error, 1)
	go func() { _, err := o.Accept(); done <- err }()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("second Accept blocks: every session would keep an extra goroutine")
	}
	if !errors.Is(err, net.ErrClosed) || err.Error() == "" {
		t.Fatalf("second Accept = %v, want net.ErrClosed", err)
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Err.Error() != "use of closed network connection" {
		t.Fatalf("second Accept = %#v: ftpserverlib would log it as a failure", err)
	}
	o.Close()
	o.Close()
}

func TestOneShotClosedBeforeAccept(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	o := newOneShot(a)
	o.Close()
	if c, err := o.Accept(); err == nil || c != nil {
		t.Fatalf("Accept on a closed one-shot handed out %v", c)
	}
}

// An unknown user must cost a bcrypt comparison of the same cost as the
// most expensive real one, so that timing does not reveal which names exist.
func TestUnknownUserCostsAsMuchAsAWrongPassword(t *testing.T) {
	dir := t.TempDir()
	cheap, _ := bcrypt.GenerateFromPassword([]byte("a"), bcrypt.MinCost)
	dear, _ := bcrypt.GenerateFromPassword([]byte("b"), bcrypt.MinCost+2)
	acc, gen, err := newAccounts([]config.User{
		{Name: "cheap", PasswordHash: string(cheap), Root: dir},
		{Name: "dear", PasswordHash: string(dear), Root: dir},
	})
	if err != nil || len(gen) != 0 {
		t.Fatal(err, gen)
	}
	if cost, _ := bcrypt.Cost(acc.dummy); cost != bcrypt.MinCost+2 {
		t.Fatalf("dummy hash cost %d, want %d", cost, bcrypt.MinCost+2)
	}
	for _, tc := range []struct{ user, pass string }{{"cheap", "b"}, {"nobody", "a"}, {"dear", ""}} {
		if _, err := acc.check(tc.user, tc.pass); !errors.Is(err, errBadLogin) {
			t.Errorf("check(%q) = %v, want the one bad-login error", tc.user, err)
		}
	}
	if a, err := acc.check("dear", "b"); err != nil || a.Name != "dear" {
		t.Fatalf("good login: %v", err)
	}
}

func TestGeneratedPasswordLogsIn(t *testing.T) {
	acc, gen, err := newAccounts([]config.User{{Name: "ftp", Root: t.TempDir()}})
	if err != nil || len(gen) != 1 || len(gen[0].Password) < 20 {
		t.Fatalf("generated %v, %v", gen, err)
	}
	if _, err := acc.check("ftp", gen[0].Password); err != nil {
		t.Fatal(err)
	}
}

// Settings are written to by ftpserverlib: each call must return a fresh copy.
func TestSettingsAreFreshCopies(t *testing.T) {
	cfg := &config.Config{
		Server: config.Server{IdleTimeout: 1500 * time.Millisecond, DataTimeout: time.Second},
		TLS:    config.TLS{Require: true},
	}
	pool, err := pasvports.New(50000, 50009, nft.Off{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: cfg, ports: pool}
	explicit := &session{srv: s, ln: newOneShot(nil)}
	a, _ := explicit.GetSettings()
	b, _ := explicit.GetSettings()
	if a == b {
		t.Fatal("GetSettings returned the same *Settings twice")
	}
	if a.IdleTimeout != 2 || a.ConnectionTimeout != 1 {
		t.Errorf("timeouts %d/%d s, want 2 (1.5s rounded up) and 1", a.IdleTimeout, a.ConnectionTimeout)
	}
	// ftpsd terminates TLS itself (ctlConn), so ftpserverlib must never
	// wrap a connection in TLS of its own, whatever the session.
	if a.TLSRequired != ftpserver.ClearOrEncrypted || !a.DisableActiveMode || !a.DisableASCIIConversion {
		t.Errorf("explicit session: TLS %v, active mode disabled %v, ASCII conversion disabled %v",
			a.TLSRequired, a.DisableActiveMode, a.DisableASCIIConversion)
	}
	implicit := &session{srv: s, ln: newOneShot(nil), implicit: true}
	if c, _ := implicit.GetSettings(); c.TLSRequired != ftpserver.ClearOrEncrypted {
		t.Errorf("implicit session: TLS %v", c.TLSRequired)
	}
}
