package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/ftpsd/ftpsd/internal/ftpclient"
)

// target is one server as a client sees it.
type target struct {
	addr       string // control address host:port
	user, pass string
	src        string // client source address
	listDir    string // directory listed by sessions and pasv
}

func (t *target) register(fs *flag.FlagSet) {
	fs.StringVar(&t.addr, "addr", "", "server control address host:port")
	fs.StringVar(&t.user, "user", "", "FTP user")
	fs.StringVar(&t.pass, "pass", "", "FTP password")
	fs.StringVar(&t.src, "src", "", "client source address")
	fs.StringVar(&t.listDir, "list", "dir", "directory to LIST")
}

func (t *target) check() error {
	if t.addr == "" || t.user == "" || t.src == "" {
		return errors.New("-addr, -user and -src are required")
	}
	return nil
}

func (t *target) host() string {
	h, _, _ := net.SplitHostPort(t.addr)
	return h
}

// dialer dials from src with a connect timeout.
func dialer(src string, timeout time.Duration) ftpclient.DialFunc {
	d := &net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return d.Dial
}

// clientTLS is a fresh client configuration, as a new client process would
// have: its own session cache, so the control connection's handshake is a
// full one and the data connection may resume it (as curl does). Only
// P-256 is offered for the key exchange: Debian's vsftpd 3.0.3 accepts no
// other group (it pins P-256 ECDH), and Go would otherwise pick the ML-KEM
// hybrid with ftpsd, so the two servers would do different work. The
// fixed ServerName is the session cache key (the default, host:port,
// differs between control and data connections).
func clientTLS() *tls.Config {
	return &tls.Config{
		InsecureSkipVerify: true,
		ServerName:         "ftpsd-bench",
		ClientSessionCache: tls.NewLRUClientSessionCache(4),
		CurvePreferences:   []tls.CurveID{tls.CurveP256},
		MinVersion:         tls.VersionTLS12,
	}
}

// login opens a control connection and logs in over explicit TLS with PBSZ 0
// and PROT P (the state every FTPS client reaches before its first transfer).
func (t *target) login(timeout time.Duration) (*ftpclient.Client, error) {
	c, rep, err := ftpclient.Dial(dialer(t.src, timeout), t.addr, clientTLS(), false)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	c.Timeout = timeout
	if rep.Code != 220 {
		c.Close()
		return nil, fmt.Errorf("greeting: %v", rep)
	}
	if err := c.AuthTLS(); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.Login(t.user, t.pass); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// pasvTiming is what one passive transfer measured.
type pasvTiming struct {
	pasv    time.Duration // PASV sent -> 227 read
	connect time.Duration // 227 read -> data TCP connection established
}

// transfer runs PASV, connects the data port, sends cmd (LIST, RETR ...)
// and, without waiting for the 150, starts the data TLS handshake, as a
// client that wants no needless round trip does. It returns what the data
// connection delivered and the timings.
func transfer(c *ftpclient.Client, cmd string, sink io.Writer) (pasvTiming, error) {
	t0 := time.Now()
	_, port, err := c.PASV()
	if err != nil {
		return pasvTiming{}, err
	}
	pasv := time.Since(t0)
	tm, err := dataTransfer(c, port, cmd, sink)
	tm.pasv = pasv
	return tm, err
}

// dataTransfer is transfer after the 227: connect port, send cmd, move the data.
func dataTransfer(c *ftpclient.Client, port int, cmd string, sink io.Writer) (pasvTiming, error) {
	var tm pasvTiming
	t1 := time.Now()
	data, err := c.DialData(port)
	if err != nil {
		return tm, err
	}
	tm.connect = time.Since(t1)
	done := make(chan error, 1)
	go func() {
		data.SetDeadline(time.Now().Add(c.Timeout))
		var err error
		if tc, ok := data.(*tls.Conn); ok {
			err = tc.Handshake()
		}
		if err == nil {
			_, err = io.Copy(sink, data)
		}
		if cerr := data.Close(); err == nil && cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = cerr
		}
		done <- err
	}()
	ctl := c.Conn()
	ctl.SetWriteDeadline(time.Now().Add(c.Timeout))
	if _, err := fmt.Fprintf(ctl, "%s\r\n", cmd); err != nil {
		data.Close()
		<-done
		return tm, fmt.Errorf("send %s: %w", cmd, err)
	}
	rep, err := c.Read()
	if err == nil && rep.Code != 150 && rep.Code != 125 {
		err = fmt.Errorf("%s: %v", strings.Fields(cmd)[0], rep)
	}
	if err != nil {
		data.Close()
		<-done
		return tm, err
	}
	if err := <-done; err != nil {
		return tm, fmt.Errorf("%s data: %w", strings.Fields(cmd)[0], err)
	}
	rep, err = c.Read()
	if err != nil {
		return tm, err
	}
	if rep.Code != 226 && rep.Code != 250 {
		return tm, fmt.Errorf("%s end: %v", strings.Fields(cmd)[0], rep)
	}
	return tm, nil
}
