package server

import (
	"bufio"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// ctlPair is a control connection read as ftpserverlib reads it (a 4 KiB
// bufio.Reader on top, ReadLine per command), with the client's end.
type ctlPair struct {
	c     *ctlConn
	cli   net.Conn
	lines chan string
}

func newCtlPair(t testing.TB) *ctlPair {
	srv, cli := net.Pipe()
	sess := &session{log: slog.New(slog.DiscardHandler)}
	p := &ctlPair{c: newCtlConn(srv, sess), cli: cli, lines: make(chan string, 1)}
	// ftpsd's own commands answer on the pipe: drain the replies (with a
	// small buffer: io.Discard would hold 8 KiB per connection).
	go func() {
		var buf [64]byte
		for {
			if _, err := cli.Read(buf[:]); err != nil {
				return
			}
		}
	}()
	go func() {
		defer close(p.lines)
		rd := bufio.NewReaderSize(p.c, ctlLineMax)
		for {
			line, isPrefix, err := rd.ReadLine()
			if err != nil {
				return
			}
			if isPrefix {
				p.lines <- "TOO LONG"
				return
			}
			p.lines <- string(line)
		}
	}()
	t.Cleanup(func() { cli.Close(); srv.Close() })
	return p
}

func (p *ctlPair) next(t testing.TB) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			return "EOF"
		}
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("no line passed on within 10 s")
		return ""
	}
}

// What ftpserverlib reads: one line per command, whatever the command's
// split over reads; ftpsd's own commands (PBSZ, FEAT) never reach it; a line
// over ctlLineMax reaches it unterminated (it then disconnects); a last
// unterminated line comes before the end of the stream.
func TestControlLines(t *testing.T) {
	p := newCtlPair(t)
	send := func(s string) {
		if _, err := p.cli.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	send("NO")
	send("OP\r\n")
	if got := p.next(t); got != "NOOP" {
		t.Fatalf("split line: %q", got)
	}
	send("USER a\r\nPBSZ 0\r\nFEAT\r\nPASS b\r\nSY")
	for _, want := range []string{"USER a", "PASS b"} {
		if got := p.next(t); got != want {
			t.Fatalf("pipelined: %q, want %q", got, want)
		}
	}
	send("ST\r\n" + strings.Repeat("x", ctlLineMax-2) + "\r\n")
	if got := p.next(t); got != "SYST" {
		t.Fatalf("line completed from what was kept: %q", got)
	}
	if got := p.next(t); got != strings.Repeat("x", ctlLineMax-2) {
		t.Fatalf("line of exactly %d bytes: %d bytes", ctlLineMax, len(got))
	}
	send("QUIT")
	p.cli.Close()
	if got := p.next(t); got != "QUIT" {
		t.Fatalf("unterminated last line: %q", got)
	}
	if got := p.next(t); got != "EOF" {
		t.Fatalf("after the last line: %q", got)
	}

	// A client that never ends its line: the first ctlLineMax bytes are
	// passed on without waiting for more (the caller's own buffer would
	// call any longer line too long, so only a line left open shows that
	// ftpsd does not keep reading, and holding, until a newline).
	p = newCtlPair(t)
	go p.cli.Write([]byte("NOOP " + strings.Repeat("x", 2*ctlLineMax)))
	if got := p.next(t); got != "TOO LONG" {
		t.Fatalf("overlong line: %q", got)
	}
}

// An idle control connection must hold no read buffer of its own beside
// ftpserverlib's: 10,000 idle sessions would otherwise keep 40 MB more,
// and the runtime's span and GC metadata for it (never returned to the OS)
// after they are gone. Measured: the caller's 4 KiB reader, the pipe, two
// goroutines and the ctlConn come to about 8.3 KB per connection; with a
// buffer of ctlLineMax more it was 12.7.
func TestIdleControlHoldsNoReadBuffer(t *testing.T) {
	const n = 500
	pairs := make([]*ctlPair, n)
	long := strings.Repeat("x", ctlLineMax-200)
	before := liveHeap()
	for i := range pairs {
		pairs[i] = newCtlPair(t)
		// Commands first, so that any buffer the read path keeps exists:
		// two pipelined ones, then a long one that arrives in two reads
		// (kept bytes grown to most of ctlLineMax).
		go func(cli net.Conn) { // net.Pipe: a write waits for its reads
			cli.Write([]byte("NOOP\r\nNOOP\r\n"))
			cli.Write([]byte("NOOP " + long[:len(long)/2]))
			cli.Write([]byte(long[len(long)/2:] + "\r\n"))
		}(pairs[i].cli)
		for _, want := range []string{"NOOP", "NOOP", "NOOP " + long} {
			if got := pairs[i].next(t); got != want {
				t.Fatalf("conn %d: %.40q", i, got)
			}
		}
	}
	per := (liveHeap() - before) / n
	runtime.KeepAlive(pairs)
	t.Logf("%d bytes of heap per idle control connection", per)
	if per > ctlLineMax+6144 {
		t.Errorf("an idle control connection holds %d bytes of heap (the caller's reader is %d): a read buffer of its own?", per, ctlLineMax)
	}
}

func liveHeap() int64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// A caller with a buffer smaller than a line gets it in pieces, also a last
// unterminated line taken from bytes kept from an earlier read.
func TestControlLinesSmallReads(t *testing.T) {
	srv, cli := net.Pipe()
	defer srv.Close()
	c := newCtlConn(srv, &session{log: slog.New(slog.DiscardHandler)})
	go func() {
		cli.Write([]byte("USER alice\r\nNOOP\r\nQUIT now"))
		cli.Close()
	}()
	var got []byte
	buf := make([]byte, 4)
	for range 100 {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	if string(got) != "USER alice\r\nNOOP\r\nQUIT now" {
		t.Fatalf("read in pieces: %q", got)
	}
}
