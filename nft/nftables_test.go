package nft

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/nftables"

	"github.com/ftpsd/ftpsd/internal/testns"
	"golang.org/x/sys/unix"
)

// The table must be exactly DESIGN.md §3: checked field by field in nft's
// JSON, and as a whole against what nft itself makes of the spec text.
func TestSetupRendersSpec(t *testing.T) {
	ns := testns.New(t)
	setup(t, ns, Config{PortMin: 50000, PortMax: 50999, ListenPorts: []uint16{2121, 50500, 2121}})

	sets := nftObjects(t, ns, "ftpsd", "set")
	if len(sets) != 4 {
		t.Fatalf("got %d sets, want 4: %v", len(sets), sets)
	}
	for i, want := range []struct{ name, typ, flags string }{
		{"pinholes4", `["ipv4_addr","inet_service"]`, `["timeout"]`},
		{"pinholes6", `["ipv6_addr","inet_service"]`, `["timeout"]`},
		{"banned4", `"ipv4_addr"`, `["interval","timeout"]`},
		{"banned6", `"ipv6_addr"`, `["interval","timeout"]`},
	} {
		s := sets[i]
		if s["name"] != want.name || s["family"] != "inet" || s["table"] != "ftpsd" {
			t.Errorf("set %d = %v; want inet ftpsd %s", i, s, want.name)
		}
		if !reflect.DeepEqual(s["type"], jsonValue(t, want.typ)) {
			t.Errorf("set %s type = %v; want %s", want.name, s["type"], want.typ)
		}
		if !reflect.DeepEqual(s["flags"], jsonValue(t, want.flags)) {
			t.Errorf("set %s flags = %v; want %s", want.name, s["flags"], want.flags)
		}
		if _, ok := s["timeout"]; ok {
			t.Errorf("set %s has a default timeout %v; elements carry their own", want.name, s["timeout"])
		}
	}

	chains := nftObjects(t, ns, "ftpsd", "chain")
	if len(chains) != 1 {
		t.Fatalf("got %d chains, want 1: %v", len(chains), chains)
	}
	c := chains[0]
	for k, want := range map[string]any{"name": "guard", "type": "filter", "hook": "input", "prio": float64(-10), "policy": "accept"} {
		if c[k] != want {
			t.Errorf("chain %s = %v; want %v", k, c[k], want)
		}
	}

	rules := nftObjects(t, ns, "ftpsd", "rule")
	if len(rules) != 7 {
		t.Fatalf("got %d rules, want 7", len(rules))
	}
	to := func(port string) string {
		return `{"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":` + port + `}},
		{"match":{"op":"in","left":{"ct":{"key":"state"}},"right":"new"}}`
	}
	prefix := to(`{"range":[50000,50999]}`)
	banned := func(port, proto, set string) string {
		return `[` + to(port) + `,{"match":{"op":"==","left":{"payload":{"protocol":"` + proto +
			`","field":"saddr"}},"right":"@` + set + `"}},{"drop":null}]`
	}
	lookup := func(proto, set string) string {
		return `[` + prefix + `,{"match":{"op":"==","left":{"concat":[{"payload":{"protocol":"` + proto +
			`","field":"saddr"}},{"payload":{"protocol":"tcp","field":"dport"}}]},"right":"@` + set + `"}},{"accept":null}]`
	}
	for i, want := range []string{
		banned(`{"range":[50000,50999]}`, "ip", "banned4"),
		banned(`{"range":[50000,50999]}`, "ip6", "banned6"),
		banned(`2121`, "ip", "banned4"),
		banned(`2121`, "ip6", "banned6"),
		lookup("ip", "pinholes4"),
		lookup("ip6", "pinholes6"),
		`[` + prefix + `,{"counter":{"packets":0,"bytes":0}},{"drop":null}]`,
	} {
		if got := rules[i]["expr"]; !reflect.DeepEqual(got, jsonValue(t, want)) {
			t.Errorf("rule %d expr =\n%v\nwant\n%v", i, got, jsonValue(t, want))
		}
	}

	// nft's own compilation of the spec, in another namespace, must list
	// byte for byte the same.
	ref := testns.New(t)
	cmd := ref.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(specRuleset(50000, 50999))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f spec: %v\n%s", err, out)
	}
	got := ns.Run(t, "nft", "list", "table", "inet", "ftpsd")
	want := ref.Run(t, "nft", "list", "table", "inet", "ftpsd")
	if got != want {
		t.Errorf("nft list of our table:\n%s\nnft's rendering of the spec:\n%s", got, want)
	}

	// The implicit dependencies nft hides in listings: protocol checks
	// come before the loads they protect.
	dbg := ns.Run(t, "nft", "--debug=netlink", "list", "chain", "inet", "ftpsd", "guard")
	for _, seq := range [][]string{
		{"meta load l4proto => reg 1", "cmp eq reg 1 0x00000006", "payload load 2b @ transport header + 2 => reg 1"},
		{"meta load nfproto => reg 1", "cmp eq reg 1 0x00000002", "payload load 4b @ network header + 12 => reg 1", "payload load 2b @ transport header + 2 => reg 9", "lookup reg 1 set pinholes4"},
		{"meta load nfproto => reg 1", "cmp eq reg 1 0x0000000a", "payload load 16b @ network header + 8 => reg 1", "payload load 2b @ transport header + 2 => reg 2", "lookup reg 1 set pinholes6"},
	} {
		if !inOrder(dbg, seq) {
			t.Errorf("bytecode lacks, in order, %q:\n%s", seq, dbg)
		}
	}
}

// inOrder reports whether consecutive lines of s start with the strings of
// seq, in order.
func inOrder(s string, seq []string) bool {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		lines = append(lines, strings.Trim(strings.TrimSpace(l), "[] "))
	}
	for i := 0; i+len(seq) <= len(lines); i++ {
		if slices.EqualFunc(lines[i:i+len(seq)], seq, strings.HasPrefix) {
			return true
		}
	}
	return false
}

// A second Setup (a restart with another range) replaces the rules and
// starts from empty sets.
func TestSetupReplaces(t *testing.T) {
	ns := testns.New(t)
	old := setup(t, ns, Config{PortMin: 50000, PortMax: 50999})
	for _, p := range []Pinhole{{Client: addr("192.0.2.1"), Port: 50001}, {Client: addr("2001:db8::1"), Port: 50002}} {
		if err := old.Open(p); err != nil {
			t.Fatal(err)
		}
	}
	before := ns.Run(t, "nft", "-a", "list", "table", "inet", "ftpsd")
	// A restart: the old process is gone (its pinholes are not) before the new one sets up.
	old.Release()

	fw := setup(t, ns, Config{PortMin: 40000, PortMax: 40099})
	if l := mustList(t, fw); len(l) != 0 {
		t.Errorf("after a second Setup List = %v; want empty", l)
	}
	rules := nftObjects(t, ns, "ftpsd", "rule")
	if len(rules) != 5 {
		t.Fatalf("after a second Setup: %d rules, want 5", len(rules))
	}
	after := ns.Run(t, "nft", "list", "table", "inet", "ftpsd")
	if strings.Contains(after, "50000") || strings.Count(after, "tcp dport 40000-40099 ct state new") != 5 {
		t.Errorf("after Setup with 40000-40099:\n%s\n(before:\n%s)", after, before)
	}
	if chains := nftObjects(t, ns, "ftpsd", "chain"); len(chains) != 1 {
		t.Errorf("chains after second Setup: %v", chains)
	}
}

// Setup, Open and Reset touch ftpsd's table and nothing else, not even a
// table of the same name in another family.
func TestOtherTablesUntouched(t *testing.T) {
	ns := testns.New(t)
	cmd := ns.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(`
table inet other {
  set s { type ipv4_addr; elements = { 192.0.2.7 } }
  chain c { type filter hook input priority 0; policy accept; tcp dport 22 ip saddr @s counter accept; }
}
table ip ftpsd {
  chain guard { type filter hook input priority -10; tcp dport 50000-50999 counter; }
}
`)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("load other tables: %v\n%s", err, out)
	}
	snapshot := func() string {
		return ns.Run(t, "nft", "-a", "list", "table", "inet", "other") + ns.Run(t, "nft", "-a", "list", "table", "ip", "ftpsd")
	}
	want := snapshot()

	fw := setup(t, ns, Config{PortMin: 50000, PortMax: 50999})
	if err := fw.Open(Pinhole{Client: addr("192.0.2.7"), Port: 50000}); err != nil {
		t.Fatal(err)
	}
	// One owner at a time (Claim): the first lets go before the next sets up,
	// and that one before the Reset, or its watcher would put the table back.
	fw.Release()
	setup(t, ns, Config{PortMin: 50000, PortMax: 50100}).Release()
	if got := snapshot(); got != want {
		t.Fatalf("Setup changed other tables:\nbefore\n%s\nafter\n%s", want, got)
	}
	if removed, err := Reset(Config{NetNSFd: ns.FD()}); err != nil || !removed {
		t.Fatalf("Reset = %v, %v; want removed", removed, err)
	}
	if got := snapshot(); got != want {
		t.Fatalf("Reset changed other tables:\nbefore\n%s\nafter\n%s", want, got)
	}
	tables := ns.Run(t, "nft", "list", "tables")
	if strings.Contains(tables, "table inet ftpsd") || !strings.Contains(tables, "table ip ftpsd") || !strings.Contains(tables, "table inet other") {
		t.Fatalf("tables after Reset:\n%s\nwant inet other and ip ftpsd, no inet ftpsd", tables)
	}
}

func TestOpenCloseList(t *testing.T) {
	ns := testns.New(t)
	const timeout = 20 * time.Second
	fw := setup(t, ns, Config{PortMin: 50000, PortMax: 50999, Timeout: timeout})

	open := []Pinhole{
		{Client: addr("198.51.100.9"), Port: 50999, Label: "user=bob session=2"},
		{Client: addr("192.0.2.1"), Port: 50000, Label: "user=alice session=7"},
		{Client: addr("2001:db8::1"), Port: 50001, Label: "user=carol session=3"},
		// IPv4-mapped (dual-stack listener) is an IPv4 packet on the
		// wire and must land in pinholes4; a zone never appears.
		{Client: addr("::ffff:192.0.2.1"), Port: 50002, Label: ""},
		{Client: addr("fe80::1%lo"), Port: 50003, Label: "zoned"},
	}
	for _, p := range open {
		if err := fw.Open(p); err != nil {
			t.Fatalf("Open(%+v): %v", p, err)
		}
	}
	want := []Pinhole{
		{Client: addr("192.0.2.1"), Port: 50000, Label: "user=alice session=7"},
		{Client: addr("192.0.2.1"), Port: 50002},
		{Client: addr("198.51.100.9"), Port: 50999, Label: "user=bob session=2"},
		{Client: addr("2001:db8::1"), Port: 50001, Label: "user=carol session=3"},
		{Client: addr("fe80::1"), Port: 50003, Label: "zoned"},
	}
	got := mustList(t, fw)
	if len(got) != len(want) {
		t.Fatalf("List = %+v; want %+v", got, want)
	}
	for i := range want {
		g := got[i]
		if g.Expires <= 0 || g.Expires > timeout {
			t.Errorf("%v Expires = %v; want in (0, %v]", g.Client, g.Expires, timeout)
		}
		g.Expires = 0
		if g != want[i] {
			t.Errorf("List[%d] = %+v; want %+v", i, g, want[i])
		}
	}
	nftText := ns.Run(t, "nft", "list", "set", "inet", "ftpsd", "pinholes4")
	if !strings.Contains(nftText, `192.0.2.1 . 50000 timeout 20s expires`) || !strings.Contains(nftText, `comment "user=alice session=7"`) {
		t.Errorf("nft shows:\n%s", nftText)
	}

	for _, p := range open {
		if err := fw.Close(p.Client, p.Port); err != nil {
			t.Errorf("Close(%v, %d): %v", p.Client, p.Port, err)
		}
	}
	if l := mustList(t, fw); len(l) != 0 {
		t.Fatalf("after Close List = %+v; want empty", l)
	}
	// Already gone (never there, or closed twice) is fine.
	for _, a := range []string{"192.0.2.1", "2001:db8::1"} {
		if err := fw.Close(addr(a), 50000); err != nil {
			t.Errorf("Close of a missing %s element = %v; want nil", a, err)
		}
	}
}

func TestOpenRejects(t *testing.T) {
	ns := testns.New(t)
	fw := setup(t, ns, Config{PortMin: 50000, PortMax: 50999})
	for _, p := range []Pinhole{
		{Client: netip.Addr{}, Port: 50000},
		{Client: addr("192.0.2.1"), Port: 49999},
		{Client: addr("192.0.2.1"), Port: 51000},
	} {
		err := fw.Open(p)
		if err == nil {
			t.Errorf("Open(%+v) = nil; want error", p)
			continue
		}
		if !strings.Contains(err.Error(), "open pinhole") {
			t.Errorf("Open error %q lacks context", err)
		}
	}
	for _, bad := range []Config{
		{PortMin: 0, PortMax: 10},
		{PortMin: 10, PortMax: 9},
		{PortMin: 1, PortMax: 2, Timeout: -time.Second},
		{PortMin: 1, PortMax: 2, Table: strings.Repeat("x", 256)},
	} {
		bad.NetNSFd = ns.FD()
		if fw, err := Setup(bad); err == nil {
			fw.Release()
			t.Errorf("Setup(%+v) = nil error", bad)
		}
	}
}

// Labels round-trip through the kernel; long ones are cut to MaxLabel bytes
// on a rune boundary.
func TestLabel(t *testing.T) {
	ns := testns.New(t)
	fw := setup(t, ns, Config{PortMin: 50000, PortMax: 50999})
	exact := strings.Repeat("a", MaxLabel)
	long := strings.Repeat("é", 100) // 200 bytes
	cases := []struct{ in, want string }{
		{"user=alice session=7", "user=alice session=7"},
		{exact, exact},
		{exact + "tail", exact},
		{long, strings.Repeat("é", MaxLabel/2)},
		{"a\"b\nc\x00d", "a_b_c_d"},
	}
	for i, c := range cases {
		port := uint16(50000 + i)
		if err := fw.Open(Pinhole{Client: addr("192.0.2.1"), Port: port, Label: c.in}); err != nil {
			t.Fatalf("Open label %q: %v", c.in, err)
		}
	}
	got := mustList(t, fw)
	if len(got) != len(cases) {
		t.Fatalf("List = %v", got)
	}
	for i, c := range cases {
		if got[i].Label != c.want || !utf8.ValidString(got[i].Label) || len(got[i].Label) > MaxLabel {
			t.Errorf("label %q came back as %q; want %q", c.in, got[i].Label, c.want)
		}
	}
	// nft must still be able to list (and re-read) the set.
	out := ns.Run(t, "nft", "list", "ruleset")
	ref := testns.New(t)
	cmd := ref.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("nft cannot re-read its listing of our labels: %v\n%s\n%s", err, b, out)
	}
}

// Elements die by themselves after Timeout, even if nobody closes them.
func TestExpiry(t *testing.T) {
	ns := testns.New(t)
	fw := setup(t, ns, Config{PortMin: 50000, PortMax: 50999, Timeout: time.Second})
	for _, a := range []string{"192.0.2.1", "2001:db8::1"} {
		if err := fw.Open(Pinhole{Client: addr(a), Port: 50000}); err != nil {
			t.Fatal(err)
		}
	}
	l := mustList(t, fw)
	if len(l) != 2 {
		t.Fatalf("List = %v", l)
	}
	for _, p := range l {
		if p.Expires <= 0 || p.Expires > time.Second {
			t.Errorf("Expires = %v; want in (0, 1s]", p.Expires)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(mustList(t, fw)) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("elements still present 5s after a 1s timeout: %v", mustList(t, fw))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Closing an expired element is the normal late path: not an error.
	if err := fw.Close(addr("192.0.2.1"), 50000); err != nil {
		t.Fatalf("Close after expiry: %v", err)
	}
	// The same pair can be opened again, with a full timeout.
	if err := fw.Open(Pinhole{Client: addr("2001:db8::1"), Port: 50000, Label: "again"}); err != nil {
		t.Fatal(err)
	}
	if l := mustList(t, fw); len(l) != 1 || l[0].Label != "again" || l[0].Expires < 900*time.Millisecond {
		t.Fatalf("reopened after expiry: List = %+v; want one fresh element", l)
	}
}

// The kernel really drops new connections into the range unless the exact
// (source, port) pair is admitted, and leaves everything else alone.
func TestKernelIPv4(t *testing.T) {
	ns := testns.New(t)
	fw := setup(t, ns, Config{PortMin: 50000, PortMax: 50099})
	const (
		in      = "127.0.0.1:50010"
		in2     = "127.0.0.1:50020"
		outside = "127.0.0.1:50100"
	)
	listen(t, ns, in)
	listen(t, ns, in2)
	listen(t, ns, outside)

	s0 := mustStats(t, fw)
	mustBeDropped(t, ns, "127.0.0.2", in)
	s1 := mustStats(t, fw)
	if s1.DroppedPackets <= s0.DroppedPackets || s1.DroppedBytes <= s0.DroppedBytes {
		t.Fatalf("Stats %+v -> %+v; want the drop counted", s0, s1)
	}
	mustConnect(t, ns, "127.0.0.3", outside)

	if err := fw.Open(Pinhole{Client: addr("127.0.0.2"), Port: 50010}); err != nil {
		t.Fatal(err)
	}
	c, err := dialFrom(ns, "127.0.0.2", in)
	if err != nil {
		t.Fatalf("dial with pinhole: %v", err)
	}
	defer c.Close()
	echo(t, c)
	mustBeDropped(t, ns, "127.0.0.3", in)  // another client
	mustBeDropped(t, ns, "127.0.0.2", in2) // another port
	mustConnect(t, ns, "127.0.0.3", outside)

	// Closing the hole stops new connections but not the established
	// one: the transfer goes on.
	if err := fw.Close(addr("127.0.0.2"), 50010); err != nil {
		t.Fatal(err)
	}
	mustBeDropped(t, ns, "127.0.0.2", in)
	echo(t, c)
	if s := mustStats(t, fw); s.DroppedPackets < s1.DroppedPackets+3 {
		t.Errorf("Stats = %+v; want at least %d dropped", s, s1.DroppedPackets+3)
	}
}

func TestKernelIPv6(t *testing.T) {
	ns := testns.New(t)
	for _, a := range []string{"fd00::1", "fd00::2", "fd00::3"} {
		ns.Run(t, "ip", "-6", "addr", "add", a+"/128", "dev", "lo", "nodad")
	}
	fw := setup(t, ns, Config{PortMin: 50000, PortMax: 50099})
	const (
		in      = "[fd00::1]:50011"
		outside = "[fd00::1]:50101"
		in4     = "127.0.0.1:50011"
	)
	listen(t, ns, in)
	listen(t, ns, outside)
	listen(t, ns, in4)

	s0 := mustStats(t, fw)
	mustBeDropped(t, ns, "fd00::2", in)
	if s := mustStats(t, fw); s.DroppedPackets <= s0.DroppedPackets {
		t.Fatalf("IPv6 drop not counted: %+v -> %+v", s0, s)
	}
	mustConnect(t, ns, "fd00::3", outside)

	if err := fw.Open(Pinhole{Client: addr("fd00::2"), Port: 50011}); err != nil {
		t.Fatal(err)
	}
	mustConnect(t, ns, "fd00::2", in)
	mustBeDropped(t, ns, "fd00::3", in)
	// An IPv6 pinhole admits nothing over IPv4.
	mustBeDropped(t, ns, "127.0.0.2", in4)
	if err := fw.Close(addr("fd00::2"), 50011); err != nil {
		t.Fatal(err)
	}
	mustBeDropped(t, ns, "fd00::2", in)
}

// Many sessions at once: no error, no lost add when another session's
// delete fails with ENOENT, and nothing left behind.
func TestConcurrency(t *testing.T) {
	ns := testns.New(t)
	fw := setup(t, ns, Config{PortMin: 50000, PortMax: 50999})
	const (
		goroutines = 16
		ports      = 60 // per goroutine, disjoint
		rounds     = 300
	)
	client := func(g int) netip.Addr {
		if g%2 == 0 {
			return netip.AddrFrom4([4]byte{192, 0, 2, byte(g + 1)})
		}
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(g + 1)})
	}
	run := func(work func(g int) error) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, goroutines)
		for g := range goroutines {
			wg.Go(func() {
				if err := work(g); err != nil {
					errs <- fmt.Errorf("goroutine %d: %w", g, err)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
	stop := make(chan struct{})
	readers := sync.WaitGroup{}
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := fw.List(); err != nil {
				t.Errorf("List: %v", err)
				return
			}
			if _, err := fw.Stats(); err != nil {
				t.Errorf("Stats: %v", err)
				return
			}
		}
	})

	// Phase 1: open, close, close again (ENOENT) in a tight loop.
	run(func(g int) error {
		for i := range rounds {
			port := uint16(50000 + g*ports + i%ports)
			if err := fw.Open(Pinhole{Client: client(g), Port: port, Label: fmt.Sprintf("g=%d i=%d", g, i)}); err != nil {
				return err
			}
			if err := fw.Close(client(g), port); err != nil {
				return err
			}
			if err := fw.Close(client(g), port); err != nil {
				return fmt.Errorf("second close: %w", err)
			}
		}
		return nil
	})
	// Phase 2: half the goroutines open holes while the other half
	// delete missing elements; every hole must be there afterwards.
	run(func(g int) error {
		for i := range ports {
			port := uint16(50000 + g*ports + i)
			var err error
			if g%2 == 0 {
				err = fw.Open(Pinhole{Client: client(g), Port: port})
			} else {
				err = fw.Close(client(g), port)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	close(stop)
	readers.Wait()
	if l := mustList(t, fw); len(l) != goroutines/2*ports {
		t.Fatalf("after phase 2 List has %d elements; want %d", len(l), goroutines/2*ports)
	}
	run(func(g int) error {
		for i := range ports {
			if err := fw.Close(client(g), uint16(50000+g*ports+i)); err != nil {
				return err
			}
		}
		return nil
	})
	if l := mustList(t, fw); len(l) != 0 {
		t.Fatalf("List after all closes = %d elements; want empty", len(l))
	}
}

func TestAttach(t *testing.T) {
	ns := testns.New(t)
	_, err := Attach(Config{NetNSFd: ns.FD()})
	if !errors.Is(err, ErrNoTable) || !strings.Contains(err.Error(), "table inet ftpsd") {
		t.Fatalf("Attach without a table = %v; want ErrNoTable naming table inet ftpsd", err)
	}

	fw := setup(t, ns, Config{PortMin: 50000, PortMax: 50999})
	if err := fw.Open(Pinhole{Client: addr("192.0.2.1"), Port: 50005, Label: "user=alice"}); err != nil {
		t.Fatal(err)
	}
	before := ns.Run(t, "nft", "-a", "list", "chain", "inet", "ftpsd", "guard")
	st, err := Attach(Config{NetNSFd: ns.FD()})
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	defer st.Release()
	if after := ns.Run(t, "nft", "-a", "list", "chain", "inet", "ftpsd", "guard"); after != before {
		t.Errorf("Attach changed the chain:\n%s\n->\n%s", before, after)
	}
	l := mustList(t, st)
	if len(l) != 1 || l[0].Client != addr("192.0.2.1") || l[0].Port != 50005 || l[0].Label != "user=alice" {
		t.Errorf("List via Attach = %+v", l)
	}
	if _, err := st.Stats(); err != nil {
		t.Errorf("Stats via Attach: %v", err)
	}

	// A table of that name that ftpsd did not make is refused.
	other := testns.New(t)
	other.Run(t, "nft", "add", "table", "inet", "ftpsd")
	if _, err := Attach(Config{NetNSFd: other.FD()}); err == nil || !strings.Contains(err.Error(), "pinholes4") {
		t.Errorf("Attach to a foreign table = %v; want an error naming the missing set", err)
	}
}

func TestReset(t *testing.T) {
	ns := testns.New(t)
	if removed, err := Reset(Config{NetNSFd: ns.FD()}); err != nil || removed {
		t.Fatalf("Reset with no table = %v, %v; want nothing removed, no error", removed, err)
	}
	ns.Run(t, "nft", "add", "table", "inet", "keep")
	setup(t, ns, Config{PortMin: 50000, PortMax: 50999}).Release()
	if removed, err := Reset(Config{NetNSFd: ns.FD()}); err != nil || !removed {
		t.Fatalf("Reset = %v, %v; want removed", removed, err)
	}
	if tables := ns.Run(t, "nft", "list", "tables"); strings.TrimSpace(tables) != "table inet keep" {
		t.Fatalf("tables after Reset:\n%s", tables)
	}
	if removed, err := Reset(Config{NetNSFd: ns.FD()}); err != nil || removed {
		t.Fatalf("second Reset = %v, %v; want nothing removed", removed, err)
	}
	if _, err := Attach(Config{NetNSFd: ns.FD()}); !errors.Is(err, ErrNoTable) {
		t.Errorf("Attach after Reset = %v; want ErrNoTable", err)
	}
}

// Release leaves the table (fail closed) and makes the value unusable.
func TestReleaseFailsClosed(t *testing.T) {
	ns := testns.New(t)
	fw := setup(t, ns, Config{PortMin: 50000, PortMax: 50099})
	listen(t, ns, "127.0.0.1:50001")
	if err := fw.Release(); err != nil {
		t.Fatal(err)
	}
	if err := fw.Release(); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	ns.Run(t, "nft", "list", "chain", "inet", "ftpsd", "guard")
	mustBeDropped(t, ns, "127.0.0.2", "127.0.0.1:50001")
	if err := fw.Open(Pinhole{Client: addr("127.0.0.2"), Port: 50001}); !errors.Is(err, ErrReleased) {
		t.Errorf("Open after Release = %v; want ErrReleased", err)
	}
	if err := fw.Close(addr("127.0.0.2"), 50001); !errors.Is(err, ErrReleased) {
		t.Errorf("Close after Release = %v; want ErrReleased", err)
	}
	if _, err := fw.List(); !errors.Is(err, ErrReleased) {
		t.Errorf("List after Release = %v; want ErrReleased", err)
	}
	if _, err := fw.Stats(); !errors.Is(err, ErrReleased) {
		t.Errorf("Stats after Release = %v; want ErrReleased", err)
	}
}

// Without CAP_NET_ADMIN every entry point fails with ErrPermission and a
// message naming the capability. The check runs in a child process
// (inside the test namespace) whose bounding set lacks cap_net_admin.
func TestNoCapNetAdmin(t *testing.T) {
	if os.Getenv("FTPSD_NFT_NOCAP_CHILD") == "1" {
		noCapChild(t)
		return
	}
	ns := testns.New(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("setpriv (util-linux) is needed to drop CAP_NET_ADMIN: %v", err)
	}
	cmd := ns.Command(setpriv, "--bounding-set=-net_admin", "--inh-caps=-net_admin", "--",
		os.Args[0], "-test.run=^TestNoCapNetAdmin$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "FTPSD_NFT_NOCAP_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "child checked") {
		t.Fatalf("child without CAP_NET_ADMIN: %v\n%s", err, out)
	}
	// The child could not have changed anything.
	if tables := ns.Run(t, "nft", "list", "tables"); strings.TrimSpace(tables) != "" {
		t.Fatalf("tables after unprivileged child: %s", tables)
	}
}

func noCapChild(t *testing.T) {
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrPermission) || !strings.Contains(err.Error(), "CAP_NET_ADMIN") || !strings.Contains(err.Error(), "setcap cap_net_admin+ep") {
			t.Errorf("%s without CAP_NET_ADMIN = %v; want ErrPermission", what, err)
		}
	}
	_, err := Setup(Config{PortMin: 50000, PortMax: 50999})
	check("Setup", err)
	t.Logf("Setup error: %v", err)
	_, err = Attach(Config{})
	check("Attach", err)
	_, err = Reset(Config{})
	check("Reset", err)
	t.Log("child checked")
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		err  error
		want error
	}{
		{fmt.Errorf("x: %w", os.NewSyscallError("recvmsg", unix.EPERM)), ErrPermission},
		{fmt.Errorf("x: %w", unix.EACCES), ErrPermission},
		{errors.New("receiveAckAware: netlink receive: operation not permitted"), ErrPermission},
		{fmt.Errorf("dial: %w", unix.EPROTONOSUPPORT), ErrUnsupported},
		{fmt.Errorf("x: %w", unix.EOPNOTSUPP), ErrUnsupported},
		{fmt.Errorf("x: %w", unix.EAFNOSUPPORT), ErrUnsupported},
	} {
		got := classify(c.err)
		if !errors.Is(got, c.want) || !strings.Contains(got.Error(), c.err.Error()) {
			t.Errorf("classify(%v) = %v; want it to wrap %v and keep the cause", c.err, got, c.want)
		}
	}
	if err := errors.New("other"); classify(err) != err {
		t.Errorf("classify changed an unrelated error")
	}
}

func TestCleanLabel(t *testing.T) {
	for in, want := range map[string]string{
		"":                        "",
		"user=a":                  "user=a",
		"tab\there":               "tab_here",
		"q\"uote":                 "q_uote",
		string([]byte{0xff, 'a'}): "_a",
	} {
		if got := cleanLabel(in); got != want {
			t.Errorf("cleanLabel(%q) = %q; want %q", in, got, want)
		}
	}
	s := cleanLabel(strings.Repeat("€", 60)) // 3 bytes each
	if len(s) != 126 || !utf8.ValidString(s) {
		t.Errorf("cut label = %d bytes, valid %v; want 126, valid", len(s), utf8.ValidString(s))
	}
}

func TestOff(t *testing.T) {
	var fw Firewall = Off{}
	if err := fw.Open(Pinhole{Client: addr("192.0.2.1"), Port: 1}); err != nil {
		t.Error(err)
	}
	if err := fw.Close(addr("192.0.2.1"), 1); err != nil {
		t.Error(err)
	}
	if l, err := fw.List(); l != nil || err != nil {
		t.Errorf("List = %v, %v", l, err)
	}
	if s, err := fw.Stats(); s != (Stats{}) || err != nil {
		t.Errorf("Stats = %v, %v", s, err)
	}
	if err := fw.Release(); err != nil {
		t.Error(err)
	}
}

// TestGroupCommitIsolatesFailures: when changes from several sessions share
// a transaction and one of them fails, the others still land and only the
// failing one reports an error.
func TestGroupCommitIsolatesFailures(t *testing.T) {
	ns := testns.New(t)
	fw := setup(t, ns, Config{PortMin: 50000, PortMax: 50099, Timeout: time.Minute})
	good := func(port uint16) *change {
		set, key, err := fw.element(netip.MustParseAddr("192.0.2.7"), port)
		if err != nil {
			t.Fatal(err)
		}
		return &change{queue: func() error {
			return fw.conn.SetAddElements(set, []nftables.SetElement{{Key: key, Timeout: time.Minute}})
		}}
	}
	missing := &nftables.Set{Table: fw.table, Name: "no_such_set", KeyType: key4Type, Concatenation: true, HasTimeout: true}
	bad := &change{queue: func() error {
		return fw.conn.SetAddElements(missing, []nftables.SetElement{{Key: make([]byte, key4Len)}})
	}}
	batch := []*change{good(50001), bad, good(50002)}
	fw.commit(batch)
	if err := batch[0].err; err != nil {
		t.Errorf("first good change: %v", err)
	}
	if err := batch[1].err; err == nil {
		t.Error("the bad change reported success")
	}
	if err := batch[2].err; err != nil {
		t.Errorf("second good change: %v", err)
	}
	holes, err := fw.List()
	if err != nil || len(holes) != 2 {
		t.Fatalf("List = %v, %v; want both good pinholes", holes, err)
	}

	// With the table gone, concurrent Opens all succeed promptly: the
	// first to find it missing restores it (none hangs, none fails).
	ns.Run(t, "nft", "delete", "table", "inet", "ftpsd")
	errs := make(chan error, 16)
	for i := range 16 {
		go func() {
			errs <- fw.Open(Pinhole{Client: netip.MustParseAddr("192.0.2.8"), Port: 50010 + uint16(i)})
		}()
	}
	for range 16 {
		select {
		case err := <-errs:
			if err != nil {
				t.Errorf("Open right after the table was deleted: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Open hung after the table was deleted")
		}
	}
	// The restore puts back what ftpsd opened through Open; the two
	// hand-made changes above were never ftpsd's pinholes.
	if holes := mustList(t, fw); len(holes) != 16 {
		t.Fatalf("%d pinholes after the restore, want the 16 opened", len(holes))
	}
}
