package server

import (
	"net"

	"golang.org/x/sys/unix"
)

// quickAckBytes is how much of a data connection's incoming stream is read
// with immediate ACKs: enough for the TLS handshake, close_notify and a
// small upload, after which the kernel's own ACK pacing is the better one.
const quickAckBytes = 256 << 10

// quickAck makes the kernel ACK the next incoming segments at once instead
// of delaying the ACK up to 40 ms. Clients such as lftp send the end of
// their TLS handshake as two small writes with Nagle on: the second waits
// for the ACK of the first, so a delayed ACK costs every small file 40 ms.
// The flag does not stick (the kernel drops back to delayed ACKs by
// itself), hence it is re-armed before each read while the stream is young.
func quickAck(c net.Conn) {
	tc, ok := tcpConn(c)
	if !ok {
		return
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1)
	})
}

// ctlQuickAckBytes is how much of a control connection's incoming stream is
// read with immediate ACKs: the TLS handshake (a client certificate chain
// included) and the login. That is where a client writes twice without a
// reply in between (TLS 1.3's Finished and then its first command; TLS
// 1.2's ClientKeyExchange, ChangeCipherSpec and Finished), so with Nagle
// on its second write waits for the ACK of the first.
const ctlQuickAckBytes = 8 << 10

// ackConn is a control connection that ACKs at once while it is young.
// After that, commands and replies strictly alternate: the reply carries
// the ACK of its command, and a quick ACK would only add a packet of its
// own before every reply (measured with lftp mirror -R: one more packet,
// and 30-80 µs more, for each of the four commands a small file takes).
// Only one goroutine reads a control connection at a time.
type ackConn struct {
	net.Conn
	read int64 // bytes read so far
}

func (c *ackConn) Read(p []byte) (int, error) {
	if c.read < ctlQuickAckBytes {
		quickAck(c.Conn)
	}
	n, err := c.Conn.Read(p)
	c.read += int64(n)
	return n, err
}
