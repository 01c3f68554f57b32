package main

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var packetsRE = regexp.MustCompile(`counter packets (\d+)`)

// TestControlRepliesCarryTheACK checks that, once a control connection is
// past its handshake and login, each reply carries the ACK of its command:
// no pure ACK packet goes out before every reply (ftpsd asks for quick ACKs
// only while the connection is young; see server/quickack.go). While it is
// young, each command is ACKed at once.
func TestControlRepliesCarryTheACK(t *testing.T) {
	ns := newNS(t)
	// Count the server's packets on the control port that carry no payload
	// (20-byte IP header, 32-byte TCP header with timestamps: 52 bytes).
	ns.Run(t, "nft", "add table inet acks; "+
		"add chain inet acks out { type filter hook output priority 0; policy accept; }; "+
		"add rule inet acks out ip saddr "+srvIP4+" tcp sport "+strconv.Itoa(ctlPort)+" ip length < 60 counter")
	pureACKs := func() int {
		t.Helper()
		m := packetsRE.FindStringSubmatch(ns.Run(t, "nft", "list", "chain", "inet", "acks", "out"))
		if m == nil {
			t.Fatal("no counter in the acks chain")
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}

	s := startFTPSD(t, ns, serverOpts{})
	c := s.client(cliA4, srvIP4, "alice")

	const commands = 50
	// While young (the handshake and login took about 1 KiB of
	// ctlQuickAckBytes, 50 NOOPs take about 1.5 KiB more), each command is
	// ACKed as soon as it is read, so before its reply is written: a pure
	// ACK per command, whatever the machine's load. Without the quick ACK
	// the reply would carry it, as below.
	before := pureACKs()
	for i := 0; i < commands; i++ {
		if _, err := c.Expect(200, "NOOP"); err != nil {
			t.Fatal(err)
		}
	}
	young := pureACKs() - before
	t.Logf("young: %d pure ACKs for %d commands", young, commands)
	if n := young; n < commands*4/5 {
		t.Fatalf("the server sent %d pure ACKs for %d commands while the connection was young: no quick ACKs", n, commands)
	}

	// Past the young part of the stream (ctlQuickAckBytes of commands).
	pad := strings.Repeat("x", 1000)
	for i := 0; i < 20; i++ {
		if _, err := c.Expect(200, "NOOP %s", pad); err != nil {
			t.Fatal(err)
		}
	}

	before = pureACKs()
	for i := 0; i < commands; i++ {
		if _, err := c.Expect(200, "NOOP"); err != nil {
			t.Fatal(err)
		}
	}
	// A reply slower than the kernel's delayed-ACK timer (40 ms, a loaded
	// machine) still gets a pure ACK first; a quick ACK gives one every
	// time. Hence the wide margin: only "every time" is a failure.
	n := pureACKs() - before
	t.Logf("past young: %d pure ACKs for %d commands", n, commands)
	if n > commands/2 {
		t.Fatalf("the server sent %d pure ACKs for %d commands: replies do not carry the ACK", n, commands)
	}
}
