package server

import (
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ftpsd/ftpsd/config"
	"github.com/ftpsd/ftpsd/nft"
)

// banFW is a firewall that can hold bans.
type banFW struct {
	nft.Off
	mu   sync.Mutex
	bans []netip.Prefix
}

func (f *banFW) Ban(p netip.Prefix, d time.Duration, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d <= 0 || reason == "" {
		panic("ban without duration or reason")
	}
	f.bans = append(f.bans, p)
	return nil
}

var _ Banner = (*banFW)(nil)

func banServer(t *testing.T, fw nft.Firewall) *Server {
	t.Helper()
	dir := t.TempDir()
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	cfg := &config.Config{
		Server:  config.Server{MaxClients: 10, MaxClientsPerIP: 10, IdleTimeout: time.Minute, DataTimeout: time.Second},
		Passive: config.Passive{PortMin: 50000, PortMax: 50009},
		Storage: config.Storage{StateDir: filepath.Join(dir, "state")},
		Ban:     config.Ban{MaxFailures: 2, Window: time.Minute, Duration: time.Hour, IPv6Prefix: 64},
		Users:   []config.User{{Name: "u", PasswordHash: string(hash), Root: filepath.Join(dir, "u")}},
	}
	s, _, err := New(cfg, slog.New(slog.DiscardHandler))
	s.fw = fw
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(s.stopExpire) })
	return s
}

// A decided ban goes to a firewall that implements Banner, and the accept
// loop refuses the source from then on.
func TestBanReachesFirewallAndAcceptLoop(t *testing.T) {
	fw := &banFW{}
	s := banServer(t, fw)
	sess := &session{srv: s, clientIP: netip.MustParseAddr("2001:db8:1:2::7"), closing: make(chan struct{})}
	sess.clientKey = s.bans.Source(sess.clientIP)
	if d := sess.failure(2, "failed login"); d <= 0 {
		t.Fatalf("first failure not tarpitted: %v", d)
	}
	sess.failure(2, "failed login")
	if len(fw.bans) != 1 || fw.bans[0].String() != "2001:db8:1:2::/64" {
		t.Fatalf("firewall bans %v, want the /64", fw.bans)
	}
	if l := s.bans.List(time.Now()); len(l) != 1 {
		t.Fatalf("server bans %v", l)
	}
	c, sc := tcpPair(t)
	defer c.Close()
	defer sc.Close()
	if s.refuseBanned(sc) {
		t.Fatal("an unbanned source was refused")
	}
	s.bans.Add(netip.MustParsePrefix("127.0.0.0/8"), time.Minute, "test", time.Now())
	c2, sc2 := tcpPair(t)
	defer c2.Close()
	if !s.refuseBanned(sc2) {
		t.Fatal("a banned source was not refused")
	}
	c2.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := c2.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("refused connection: read %d, %v", n, err)
	}
}

// Without Banner (nft.Off), bans are the accept loop's alone.
func TestBanWithoutBanner(t *testing.T) {
	s := banServer(t, nft.Off{})
	sess := &session{srv: s, clientIP: netip.MustParseAddr("198.51.100.7"), closing: make(chan struct{})}
	sess.failure(2, "failed login")
	sess.failure(2, "failed login")
	if _, ok := s.bans.Banned(sess.clientIP, time.Now()); !ok {
		t.Fatal("not banned")
	}
}

// addBan bans prefix as a decided ban is: logged, handed to the firewall
// if it holds bans, refused at accept.
func addBan(s *Server, prefix netip.Prefix) {
	s.enforceBan(s.bans.Add(prefix, time.Minute, "test", time.Now()), "test", nil)
}

// A ban covers a whole prefix and reaches the firewall.
func TestAddBan(t *testing.T) {
	fw := &banFW{}
	s := banServer(t, fw)
	p := netip.MustParsePrefix("203.0.113.0/24")
	addBan(s, p)
	if len(fw.bans) != 1 || fw.bans[0] != p {
		t.Fatalf("firewall bans %v", fw.bans)
	}
	if _, ok := s.bans.Banned(netip.MustParseAddr("203.0.113.9"), time.Now()); !ok {
		t.Fatal("address in the banned /24 not banned")
	}
}
