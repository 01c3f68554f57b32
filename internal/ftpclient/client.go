// Package ftpclient is a small FTPS client for tests and benchmarks: every
// command and reply is visible, data connections are dialled explicitly, and
// the dialler is pluggable so that tests can choose the source address.
package ftpclient

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// DialFunc opens a TCP connection; tests use it to pick a source address or namespace.
type DialFunc func(network, address string) (net.Conn, error)

// Client is one FTP control connection.
type Client struct {
	conn    net.Conn
	r       *bufio.Reader
	dial    DialFunc
	host    string
	tlsConf *tls.Config
	// Private is true once PROT P succeeded: data connections use TLS.
	Private bool
	// Timeout bounds each reply and data operation.
	Timeout time.Duration
	// UsePASV makes transfers use PASV and dial the address its reply
	// names, as clients do behind a load balancer (where the control
	// connection's host is the balancer); otherwise EPSV and the control host.
	UsePASV bool
}

// Reply is a server reply.
type Reply struct {
	Code int
	Msg  string
}

func (r Reply) String() string { return fmt.Sprintf("%d %s", r.Code, r.Msg) }

// Dial connects to addr and reads the greeting. With implicit, TLS starts at once.
//
// Like curl and lftp, the client resumes its control connection's TLS
// session on its data connections: it uses a copy of tlsConf with a session
// cache of its own, keyed by host (not host:port, which differs between
// control and data).
func Dial(dial DialFunc, addr string, tlsConf *tls.Config, implicit bool) (*Client, Reply, error) {
	if dial == nil {
		dial = net.Dial
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, Reply{}, err
	}
	tlsConf = tlsConf.Clone()
	if tlsConf.ServerName == "" {
		tlsConf.ServerName = host
	}
	tlsConf.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	conn, err := dial("tcp", addr)
	if err != nil {
		return nil, Reply{}, err
	}
	c := &Client{conn: conn, dial: dial, host: host, tlsConf: tlsConf, Timeout: 10 * time.Second}
	if implicit {
		c.conn = tls.Client(conn, tlsConf)
		c.Private = true
	}
	c.r = bufio.NewReader(c.conn)
	rep, err := c.Read()
	if err != nil {
		conn.Close()
		return nil, rep, err
	}
	return c, rep, nil
}

// TLSConfig is the client's own TLS configuration, session cache included.
func (c *Client) TLSConfig() *tls.Config { return c.tlsConf }

// DialDataTLS opens a data connection to port and starts TLS with conf
// (for tests: another session's tickets, or none), without handshaking yet.
func (c *Client) DialDataTLS(port int, conf *tls.Config) (*tls.Conn, error) {
	conn, err := c.dialData(c.host, port)
	if err != nil {
		return nil, err
	}
	return tls.Client(conn, conf), nil
}

// Conn is the control connection.
func (c *Client) Conn() net.Conn { return c.conn }

// Close drops the control connection without QUIT.
func (c *Client) Close() error { return c.conn.Close() }

// Read reads one (possibly multi-line) reply.
func (c *Client) Read() (Reply, error) {
	c.conn.SetReadDeadline(time.Now().Add(c.Timeout))
	line, err := c.r.ReadString('\n')
	if err != nil {
		return Reply{}, fmt.Errorf("read reply: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if len(line) < 4 {
		return Reply{}, fmt.Errorf("short reply %q", line)
	}
	code, err := strconv.Atoi(line[:3])
	if err != nil {
		return Reply{}, fmt.Errorf("bad reply %q", line)
	}
	msg := line[4:]
	if line[3] == '-' {
		end := line[:3] + " "
		for {
			l, err := c.r.ReadString('\n')
			if err != nil {
				return Reply{}, fmt.Errorf("read multi-line reply: %w", err)
			}
			l = strings.TrimRight(l, "\r\n")
			msg += "\n" + l
			if strings.HasPrefix(l, end) {
				break
			}
		}
	}
	return Reply{Code: code, Msg: msg}, nil
}

// Cmd sends one command and reads its reply.
func (c *Client) Cmd(format string, args ...any) (Reply, error) {
	c.conn.SetWriteDeadline(time.Now().Add(c.Timeout))
	if _, err := fmt.Fprintf(c.conn, format+"\r\n", args...); err != nil {
		return Reply{}, fmt.Errorf("send %q: %w", strings.Fields(format)[0], err)
	}
	return c.Read()
}

// Expect sends a command and fails unless the reply has code want.
func (c *Client) Expect(want int, format string, args ...any) (Reply, error) {
	rep, err := c.Cmd(format, args...)
	if err != nil {
		return rep, err
	}
	if rep.Code != want {
		return rep, fmt.Errorf("%s: got %v, want %d", strings.Fields(format)[0], rep, want)
	}
	return rep, nil
}

// AuthTLS upgrades the control connection (explicit FTPS).
func (c *Client) AuthTLS() error {
	if _, err := c.Expect(234, "AUTH TLS"); err != nil {
		return err
	}
	tc := tls.Client(c.conn, c.tlsConf)
	tc.SetDeadline(time.Now().Add(c.Timeout))
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	tc.SetDeadline(time.Time{})
	c.conn = tc
	c.r = bufio.NewReader(tc)
	return nil
}

// Login sends USER and PASS, then PBSZ 0 and PROT P if the control channel is TLS.
func (c *Client) Login(user, pass string) error {
	rep, err := c.Cmd("USER %s", user)
	if err != nil {
		return err
	}
	if rep.Code == 331 {
		if rep, err = c.Cmd("PASS %s", pass); err != nil {
			return err
		}
	}
	if rep.Code != 230 {
		return fmt.Errorf("login: %v", rep)
	}
	if _, ok := c.conn.(*tls.Conn); ok {
		if _, err := c.Expect(200, "PBSZ 0"); err != nil {
			return err
		}
		if _, err := c.Expect(200, "PROT P"); err != nil {
			return err
		}
		c.Private = true
	}
	return nil
}

// EPSV asks for a passive port.
func (c *Client) EPSV() (int, error) {
	rep, err := c.Expect(229, "EPSV")
	if err != nil {
		return 0, err
	}
	i, j := strings.Index(rep.Msg, "(|||"), strings.LastIndex(rep.Msg, "|)")
	if i < 0 || j < i {
		return 0, fmt.Errorf("EPSV reply %q", rep.Msg)
	}
	return strconv.Atoi(rep.Msg[i+4 : j])
}

// PASV asks for a passive address (IPv4 only).
func (c *Client) PASV() (string, int, error) {
	rep, err := c.Expect(227, "PASV")
	if err != nil {
		return "", 0, err
	}
	i, j := strings.Index(rep.Msg, "("), strings.Index(rep.Msg, ")")
	if i < 0 || j < i {
		return "", 0, fmt.Errorf("PASV reply %q", rep.Msg)
	}
	f := strings.Split(rep.Msg[i+1:j], ",")
	if len(f) != 6 {
		return "", 0, fmt.Errorf("PASV reply %q", rep.Msg)
	}
	hi, _ := strconv.Atoi(f[4])
	lo, _ := strconv.Atoi(f[5])
	return strings.Join(f[:4], "."), hi*256 + lo, nil
}

// DialData opens the data connection to port on the control host; it is
// TLS-wrapped after PROT P (the handshake runs on first use).
func (c *Client) DialData(port int) (net.Conn, error) { return c.DialDataAt(c.host, port) }

func (c *Client) dialData(host string, port int) (net.Conn, error) {
	conn, err := c.dial("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("dial data %s port %d: %w", host, port, err)
	}
	return conn, nil
}

// DialDataAt is DialData to another host (the one a PASV reply names).
func (c *Client) DialDataAt(host string, port int) (net.Conn, error) {
	conn, err := c.dialData(host, port)
	if err != nil {
		return nil, err
	}
	if c.Private {
		return tls.Client(conn, c.tlsConf), nil
	}
	return conn, nil
}

// transfer runs EPSV (or PASV), dials, sends cmd and waits for the 150.
func (c *Client) transfer(cmd string) (net.Conn, error) {
	host, port := c.host, 0
	var err error
	if c.UsePASV {
		host, port, err = c.PASV()
	} else {
		port, err = c.EPSV()
	}
	if err != nil {
		return nil, err
	}
	data, err := c.DialDataAt(host, port)
	if err != nil {
		return nil, err
	}
	rep, err := c.Cmd("%s", cmd)
	if err != nil {
		data.Close()
		return nil, err
	}
	if rep.Code != 150 && rep.Code != 125 {
		data.Close()
		return nil, fmt.Errorf("%s: %v", strings.Fields(cmd)[0], rep)
	}
	data.SetDeadline(time.Now().Add(c.Timeout))
	return data, nil
}

// finish closes a data connection cleanly and reads the final reply.
func (c *Client) finish(data net.Conn) error {
	if err := data.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close data: %w", err)
	}
	rep, err := c.Read()
	if err != nil {
		return err
	}
	if rep.Code != 226 && rep.Code != 250 {
		return fmt.Errorf("transfer: %v", rep)
	}
	return nil
}

// Retr downloads a file (cmd is usually "RETR path"; LIST, NLST and MLSD work the same way).
func (c *Client) Retr(cmd string) ([]byte, error) {
	data, err := c.transfer(cmd)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(data)
	if err != nil {
		data.Close()
		return b, fmt.Errorf("read data: %w", err)
	}
	return b, c.finish(data)
}

// Stor uploads b (cmd is "STOR path" or "APPE path").
func (c *Client) Stor(cmd string, b []byte) error {
	data, err := c.transfer(cmd)
	if err != nil {
		return err
	}
	if _, err := data.Write(b); err != nil {
		data.Close()
		return fmt.Errorf("write data: %w", err)
	}
	return c.finish(data)
}

// Begin starts a transfer and hands over its data connection (for aborts and cut-offs).
func (c *Client) Begin(cmd string) (net.Conn, error) { return c.transfer(cmd) }

// Quit sends QUIT and closes.
func (c *Client) Quit() error {
	_, err := c.Cmd("QUIT")
	c.conn.Close()
	return err
}
