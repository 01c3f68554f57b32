package nft

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/internal/testns"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// setup runs Setup in ns and releases the connection when the test ends.
func setup(t testing.TB, ns *testns.NS, cfg Config) *NFTables {
	t.Helper()
	cfg.NetNSFd = ns.FD()
	fw, err := Setup(cfg)
	if err != nil {
		t.Fatalf("Setup(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { _ = fw.Release() })
	return fw
}

// specRuleset is DESIGN.md §3 as nft source, for the given range, with
// bans (DESIGN.md §5) for the range and control port 2121.
func specRuleset(min, max uint16) string {
	return fmt.Sprintf(`table inet ftpsd {
  set pinholes4 { type ipv4_addr . inet_service; flags timeout; }
  set pinholes6 { type ipv6_addr . inet_service; flags timeout; }
  set banned4 { type ipv4_addr; flags interval, timeout; }
  set banned6 { type ipv6_addr; flags interval, timeout; }
  chain guard {
    type filter hook input priority filter - 10; policy accept;
    tcp dport %[1]d-%[2]d ct state new ip saddr @banned4 drop
    tcp dport %[1]d-%[2]d ct state new ip6 saddr @banned6 drop
    tcp dport 2121 ct state new ip saddr @banned4 drop
    tcp dport 2121 ct state new ip6 saddr @banned6 drop
    tcp dport %[1]d-%[2]d ct state new ip saddr . tcp dport @pinholes4 accept
    tcp dport %[1]d-%[2]d ct state new ip6 saddr . tcp dport @pinholes6 accept
    tcp dport %[1]d-%[2]d ct state new counter drop
  }
}
`, min, max)
}

// nftObjects returns the objects of `nft -j list table inet <name>` of one
// kind ("set", "chain", "rule"), each decoded generically.
func nftObjects(t *testing.T, ns *testns.NS, table, kind string) []map[string]any {
	t.Helper()
	out := ns.Run(t, "nft", "-j", "list", "table", "inet", table)
	var doc struct {
		Nftables []map[string]map[string]any `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("parse nft -j output: %v\n%s", err, out)
	}
	var objs []map[string]any
	for _, o := range doc.Nftables {
		if v, ok := o[kind]; ok {
			objs = append(objs, v)
		}
	}
	return objs
}

// jsonValue decodes a JSON literal the same way nft's output is decoded, so
// the two can be compared with reflect.DeepEqual.
func jsonValue(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("bad expected JSON %s: %v", s, err)
	}
	return v
}

// listen opens a TCP listener inside ns that echoes what it reads.
func listen(t *testing.T, ns *testns.NS, addr string) {
	t.Helper()
	ln := ns.Listen(t, addr)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
}

// dialTimeout is short: a dropped SYN is retransmitted only after 1s, so
// 300ms reliably means "dropped", while loopback connects in microseconds.
const dialTimeout = 300 * time.Millisecond

// dialFrom connects from src (bound inside ns) to dst.
func dialFrom(ns *testns.NS, src string, dst string) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() error {
		d := net.Dialer{
			LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(src), 0)),
			Timeout:   dialTimeout,
		}
		var err error
		c, err = d.Dial("tcp", dst)
		return err
	})
	return c, err
}

// mustConnect fails unless src can connect to dst and get an echo back.
func mustConnect(t *testing.T, ns *testns.NS, src, dst string) {
	t.Helper()
	c, err := dialFrom(ns, src, dst)
	if err != nil {
		t.Fatalf("dial %s -> %s: %v; want connected", src, dst, err)
	}
	defer c.Close()
	echo(t, c)
}

func echo(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "ping"); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo = %q, %v; want ping", buf, err)
	}
}

// mustBeDropped fails unless the SYN from src to dst is silently dropped
// (a timeout, not a refusal).
func mustBeDropped(t *testing.T, ns *testns.NS, src, dst string) {
	t.Helper()
	c, err := dialFrom(ns, src, dst)
	if err == nil {
		c.Close()
		t.Fatalf("dial %s -> %s connected; want dropped", src, dst)
	}
	var ne net.Error
	if !(errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("dial %s -> %s: %v; want a timeout (dropped SYN)", src, dst, err)
	}
}

func mustStats(t *testing.T, fw Firewall) Stats {
	t.Helper()
	s, err := fw.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	return s
}

func mustList(t *testing.T, fw Firewall) []Pinhole {
	t.Helper()
	l, err := fw.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return l
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// generation reads nftables' ruleset generation in fw's namespace. The
// kernel bumps it once per committed transaction, so the difference over a
// run counts transactions whatever code made them (google/nftables has no
// call for NFT_MSG_GETGEN).
func generation(t testing.TB, fw *NFTables) uint32 {
	t.Helper()
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: fw.cfg.NetNSFd})
	if err != nil {
		t.Fatalf("generation: %v", err)
	}
	defer c.Close()
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN), Flags: netlink.Request},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0}, // nfgenmsg
	})
	if err != nil || len(msgs) != 1 || len(msgs[0].Data) < 4 {
		t.Fatalf("generation: %d replies, %v", len(msgs), err)
	}
	ad, err := netlink.NewAttributeDecoder(msgs[0].Data[4:])
	if err != nil {
		t.Fatalf("generation: %v", err)
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() == unix.NFTA_GEN_ID {
			return ad.Uint32()
		}
	}
	t.Fatalf("generation: no NFTA_GEN_ID in the reply (%v)", ad.Err())
	return 0
}
