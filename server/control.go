package server

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ftpsd/ftpsd/driver"
)

// ctlConn is the control connection as the session's ftpserverlib server
// sees it: a plain-text stream of commands and replies. ftpsd terminates the
// control TLS itself (AUTH TLS here, implicit TLS in handle), so that it can
// answer the commands where ftpserverlib v0.32.3 has no setting or driver
// hook, and fix its replies on the way out:
//
//   - FEAT (MLST facts, HASH, no EPRT while active mode is off), HELP,
//     OPTS MLST/HASH, MLST, HASH, STAT <path>: ftpserverlib's FEAT list, MLSx
//     facts and STAT <dir> listing are fixed, HELP is "not implemented", and
//     its HASH stats the path without resolving it against the working
//     directory (handleGenericHash: c.driver.Stat(args[0])).
//   - PORT/EPRT: its DisableActiveMode answers 421, which means "closing".
//   - EPSV ALL, EPSV <proto>: it ignores EPSV's argument.
//   - AUTH, PBSZ, PROT: control TLS has to be ours for all of the above; data
//     TLS follows (dataListener), since PROT P must not reach ftpserverlib.
//   - 552 (its only code for ErrStorageExceeded) becomes 452, and wrapper
//     texts such as "driver error: calling GetHandle:" are dropped.
//
// Upstream changes that would remove this layer: a hook for custom commands
// (or a public commandsMap), MLSx fact and FEAT callbacks, EPSV argument
// handling, 502 for disabled active mode, a configurable code for
// ErrStorageExceeded, and the STAT/HASH path fixes.
type ctlConn struct {
	raw  net.Conn // TCP, or the implicit TLS connection
	sess *session

	// Read side: only ftpserverlib's command loop reads. A session waiting
	// for its next command holds no read buffer of its own: reads go into
	// the caller's buffer (ftpserverlib's command reader, which it keeps
	// anyway), and only what arrived past the line being handed over is
	// kept, in rest, until it is consumed. With 10,000 idle sessions a
	// buffer of ctlLineMax each was 40 MB, and what Go never returns to the
	// OS (span structures, GC metadata) grows with the peak heap.
	// ftpserverlib's own reader and writer (4 KiB each, made in
	// newClientHandler) stay for the session's life; buffers it took from a
	// pool per command, or made on first use, would halve what an idle
	// session holds (an upstream change: it has no setting for them).
	in      io.Reader // raw, then the TLS connection after AUTH TLS
	rest    []byte    // read but not yet handed over; nil when empty
	pending []byte    // the part of a handed-over line the caller had no room for
	state   ctlState

	mu      sync.Mutex // serialises writes and guards the fields below
	cur     net.Conn   // raw, or the TLS connection after AUTH TLS
	replies lineBuf    // holds a reply line ftpserverlib has not finished yet
	// upload is open while a STOR or APPE waits for its final reply.
	upload chan struct{}

	closed    chan struct{}
	closeOnce sync.Once
}

// ctlState is what the session negotiated on the control channel.
type ctlState struct {
	epsvAll bool
	hash    string // OPTS HASH selection
}

func newCtlConn(raw net.Conn, sess *session) *ctlConn {
	return &ctlConn{
		raw:    raw,
		sess:   sess,
		in:     raw,
		cur:    raw,
		closed: make(chan struct{}),
		state:  ctlState{hash: "SHA-256"},
	}
}

// ctlLineMax is ftpserverlib's command size limit: a longer line reaches it
// unterminated, and it disconnects.
const ctlLineMax = 4096

func (c *ctlConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for len(c.pending) == 0 {
		line, err := c.nextLine(p)
		if err != nil && !errors.Is(err, errLineTooLong) && len(line) == 0 {
			c.awaitUpload(err)
			return 0, err
		}
		// With an error, line is too long or the end of a stream that
		// stopped within a line: ftpserverlib gets it as it is (and the
		// error on its next read).
		if err == nil {
			handled, err := c.intercept(line)
			if err != nil {
				return 0, err
			}
			if handled {
				continue
			}
		}
		// line is either p's start (copied onto itself) or kept bytes.
		n := copy(p, line)
		if n < len(line) {
			c.pending = line[n:]
		}
		return n, nil
	}
	n := copy(p, c.pending)
	if c.pending = c.pending[n:]; len(c.pending) == 0 {
		c.pending = nil
	}
	return n, nil
}

// errLineTooLong comes with the first ctlLineMax bytes of a longer line,
// passed on unterminated: ftpserverlib then disconnects.
var errLineTooLong = errors.New("command line too long")

// maxEmptyReads bounds reads returning neither data nor error in a row, as
// bufio does.
const maxEmptyReads = 100

// nextLine returns the next line, '\n' included; or errLineTooLong and a
// line's first ctlLineMax bytes; or what came of a line and the error that
// ended the stream. The line is in p or in bytes kept from an earlier read.
func (c *ctlConn) nextLine(p []byte) ([]byte, error) {
	for empty := 0; ; {
		if line, ok, err := c.takeLine(); ok {
			return line, err
		}
		var n int
		var err error
		if len(c.rest) == 0 {
			// Nothing kept (a session waiting for its next command):
			// read into the caller's buffer.
			buf := p[:min(len(p), ctlLineMax)]
			n, err = c.in.Read(buf)
			if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
				if i+1 < n {
					c.rest = bytes.Clone(buf[i+1 : n])
				}
				return buf[:i+1], nil
			}
			if err != nil {
				return buf[:n], err
			}
			if n > 0 {
				c.rest = bytes.Clone(buf[:n])
			}
		} else {
			// Part of a line is kept: read the rest of it onto it.
			buf := p[:min(len(p), ctlLineMax-len(c.rest))]
			n, err = c.in.Read(buf)
			c.rest = append(c.rest, buf[:n]...)
			if err != nil && bytes.IndexByte(c.rest, '\n') < 0 {
				line := c.rest
				c.rest = nil
				return line, err
			}
		}
		if n > 0 {
			empty = 0
		} else if empty++; empty >= maxEmptyReads {
			return nil, io.ErrNoProgress
		}
	}
}

// takeLine takes the first line out of rest, if it holds a whole one or
// ctlLineMax bytes without one.
func (c *ctlConn) takeLine() ([]byte, bool, error) {
	window := c.rest[:min(len(c.rest), ctlLineMax)]
	var line []byte
	var err error
	if i := bytes.IndexByte(window, '\n'); i >= 0 {
		line = window[:i+1]
	} else if len(window) == ctlLineMax {
		line, err = window, errLineTooLong
	} else {
		return nil, false, nil
	}
	if c.rest = c.rest[len(line):]; len(c.rest) == 0 {
		c.rest = nil
	}
	return line, true, err
}

// awaitUpload holds back the end of the control stream while an upload is
// still arriving: a client may send all data and close_notify and hang up
// without waiting for the 226, and ftpserverlib would cut the data
// connection (and so the upload) as soon as it saw the control stream end.
// The data connection's own data_timeout bounds the wait.
func (c *ctlConn) awaitUpload(err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return
	}
	c.mu.Lock()
	ch := c.upload
	c.mu.Unlock()
	if ch == nil {
		return
	}
	c.sess.log.Info("control connection ended during an upload; letting the upload finish")
	select {
	case <-ch:
	case <-c.closed:
	}
}

func (c *ctlConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if out := c.replies.feed(p, c.rewrite); len(out) > 0 {
		if _, err := c.cur.Write(out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// libWrappers are ftpserverlib's error wrapper texts and strconv's, which say
// nothing to a client.
var libWrappers = regexp.MustCompile(`(?:driver|network|file access) error: [A-Za-z' ]+: |strconv\.\w+: parsing "[^"]*": `)

// timeParseError is Go's time.Parse error, which quotes its layout.
var timeParseError = regexp.MustCompile(`parsing time "[^"]*".*$`)

// rewrite adjusts one reply line from ftpserverlib (mu held).
func (c *ctlConn) rewrite(line string) string {
	line = libWrappers.ReplaceAllString(line, "")
	line = timeParseError.ReplaceAllString(line, "not a time of the form YYYYMMDDHHMMSS")
	if len(line) < 4 || (line[3] != ' ' && line[3] != '-') {
		return line
	}
	code, err := strconv.Atoi(line[:3])
	if err != nil {
		return line
	}
	if code == 550 && strings.Contains(line, driver.UnavailableText) {
		// A failure of the object storage that may pass (network,
		// throttling): 451, "local error", invites a retry where 550
		// would say the file is the problem.
		code = 451
		line = "451" + line[3:]
	}
	if code == 552 {
		// ftpsd's driver reports a full disk as ErrStorageExceeded, which
		// ftpserverlib answers with 552 (quota); a full disk is 452.
		code = 452
		line = "452" + line[3:]
	}
	if line[3] == ' ' && c.upload != nil && (code == 226 || code == 250 || code >= 400) {
		close(c.upload)
		c.upload = nil
	}
	return line
}

// reply sends a reply of ftpsd's own; lines after the first are sent as they
// are (callers indent them).
func (c *ctlConn) reply(code int, first string, more ...string) error {
	var b strings.Builder
	if len(more) == 0 {
		fmt.Fprintf(&b, "%d %s\r\n", code, first)
	} else {
		fmt.Fprintf(&b, "%d-%s\r\n", code, first)
		for i, l := range more {
			if i == len(more)-1 {
				fmt.Fprintf(&b, "%d %s\r\n", code, l)
			} else {
				fmt.Fprintf(&b, "%s\r\n", l)
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := io.WriteString(c.cur, b.String())
	return err
}

// startTLS runs the handshake that follows a 234 reply.
func (c *ctlConn) startTLS() error {
	if len(c.rest) > 0 {
		// Commands pipelined behind AUTH TLS in clear text could be
		// injected by anyone on the path (CVE-2011-0411); refuse them.
		return errors.New("clear-text data after AUTH TLS")
	}
	cfg, err := c.sess.GetTLSConfig()
	if err != nil {
		return fmt.Errorf("AUTH TLS: %w", err)
	}
	tc := tls.Server(c.raw, cfg)
	tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		c.sess.log.Info("AUTH TLS handshake failed", "err", err)
		return fmt.Errorf("AUTH TLS handshake: %w", err)
	}
	tc.SetDeadline(time.Time{})
	c.mu.Lock()
	c.cur = tc
	c.mu.Unlock()
	c.in = tc
	c.sess.ctlTLS.Store(true)
	return nil
}

// markUpload notes that the command being passed on is an upload.
func (c *ctlConn) markUpload() {
	c.mu.Lock()
	if c.upload == nil {
		c.upload = make(chan struct{})
	}
	c.mu.Unlock()
}

func (c *ctlConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	c.mu.Lock()
	cur := c.cur
	c.mu.Unlock()
	return cur.Close()
}

func (c *ctlConn) current() net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

func (c *ctlConn) LocalAddr() net.Addr                { return c.raw.LocalAddr() }
func (c *ctlConn) RemoteAddr() net.Addr               { return c.raw.RemoteAddr() }
func (c *ctlConn) SetDeadline(t time.Time) error      { return c.current().SetDeadline(t) }
func (c *ctlConn) SetReadDeadline(t time.Time) error  { return c.current().SetReadDeadline(t) }
func (c *ctlConn) SetWriteDeadline(t time.Time) error { return c.current().SetWriteDeadline(t) }
