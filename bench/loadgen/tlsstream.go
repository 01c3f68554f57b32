package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// The bare TLS stream: the large file sent over one TLS connection and
// nothing else (no FTP, no file system in the way but the page cache), on
// the same veth path, with the same certificate and TLS parameters as the
// FTPS downloads. It is the ceiling a download can reach.

// cmdTLSServe runs in the server's namespace: it sends -file to every TLS
// connection, in large writes, then closes. It stops after -for.
func cmdTLSServe(args []string) error {
	fs := flag.NewFlagSet("tlsserve", flag.ContinueOnError)
	listen := fs.String("listen", "", "address to listen on")
	cert := fs.String("cert", "", "certificate (PEM)")
	key := fs.String("key", "", "key (PEM)")
	file := fs.String("file", "", "file sent to each connection")
	limit := fs.Duration("for", time.Hour, "stop after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *listen == "" || *cert == "" || *key == "" || *file == "" {
		return errors.New("-listen, -cert, -key and -file are required")
	}
	kp, err := tls.LoadX509KeyPair(*cert, *key)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	time.AfterFunc(*limit, func() { ln.Close() })
	conf := &tls.Config{Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS12}
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Minute))
			tc := tls.Server(c, conf)
			f, err := os.Open(*file)
			if err != nil {
				fmt.Fprintln(os.Stderr, "tlsserve:", err)
				return
			}
			defer f.Close()
			buf := make([]byte, 256<<10)
			if _, err := io.CopyBuffer(struct{ io.Writer }{tc}, struct{ io.Reader }{f}, buf); err != nil {
				fmt.Fprintln(os.Stderr, "tlsserve:", err)
				return
			}
			tc.CloseWrite()
		}()
	}
}

// cmdTLSStream reads one stream from a tlsserve and records MB/s from the
// end of the handshake to the end of the stream, as xfer counts an FTPS
// download from its pretransfer time.
func cmdTLSStream(args []string) error {
	fs, cm, t := flags("tlsstream")
	size := fs.Int64("size", 0, "bytes the stream must carry")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cm.check(false); err != nil {
		return err
	}
	if t.addr == "" || t.src == "" || *size <= 0 {
		return errors.New("-addr, -src and -size are required")
	}
	raw, err := dialer(t.src, 10*time.Second)("tcp", t.addr)
	if err != nil {
		return err
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(10 * time.Minute))
	conf := clientTLS()
	conf.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
	c := tls.Client(raw, conf)
	t0 := time.Now()
	if err := c.Handshake(); err != nil {
		return err
	}
	t1 := time.Now()
	n, err := io.CopyBuffer(io.Discard, c, make([]byte, 256<<10))
	secs := time.Since(t1).Seconds()
	if err != nil {
		return err
	}
	if n != *size {
		return fmt.Errorf("stream carried %d bytes, want %d", n, *size)
	}
	st := c.ConnectionState()
	return emit(cm.out, Result{Test: "tlsstream", Server: cm.server, Run: cm.run, Values: map[string]float64{
		"mb_per_s":     float64(n) / secs / 1e6,
		"seconds":      secs,
		"handshake_ms": float64(t1.Sub(t0)) / float64(time.Millisecond),
		"bytes":        float64(n),
	}, Info: map[string]string{"tls": tls.VersionName(st.Version) + " " + tls.CipherSuiteName(st.CipherSuite)}})
}
