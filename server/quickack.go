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

// ackConn is a control connection that ACKs at once: commands and replies
// are small and strictly alternate, so a delayed ACK only ever delays the
// client's next small write (Nagle), never saves a packet.
type ackConn struct{ net.Conn }

func (c ackConn) Read(p []byte) (int, error) {
	quickAck(c.Conn)
	return c.Conn.Read(p)
}
