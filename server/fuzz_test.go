package server

import (
	"bytes"
	"testing"
	"time"
)

// FuzzHelloTickets feeds arbitrary bytes to the ClientHello reader and
// parser that run on every data connection before its handshake: no input
// may panic, read past its record lengths, or produce a ticket that opens.
func FuzzHelloTickets(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{22, 3, 1, 0, 4, 1, 0, 0, 0})
	f.Add([]byte{22, 3, 1, 0, 1, 1, 22, 3, 1, 0, 3, 0, 0, 0})
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	keys, err := newTicketKeys(time.Now)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		raw, msg, err := readClientHello(bytes.NewReader(b))
		if !bytes.HasPrefix(b, raw) {
			t.Fatalf("returned bytes that were not read")
		}
		if err != nil {
			return
		}
		tickets, err := helloTickets(msg)
		if err != nil {
			return
		}
		for _, tk := range tickets {
			if _, _, err := keys.openToken(tk); err == nil {
				t.Fatalf("an arbitrary ticket opened")
			}
		}
	})
}

// FuzzTicketOpen: arbitrary identities never open and never panic; a
// sealed ticket with any byte changed never opens.
func FuzzTicketOpen(f *testing.F) {
	f.Add([]byte{}, 0)
	f.Add(bytes.Repeat([]byte{0}, 64), 3)
	keys, err := newTicketKeys(time.Now)
	if err != nil {
		f.Fatal(err)
	}
	ss := sessionState(f)
	good, err := keys.seal(bindToken{7}, ss)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte, flip int) {
		if _, _, err := keys.open(b); err == nil && !bytes.Equal(b, good) {
			t.Fatalf("arbitrary identity opened")
		}
		bad := bytes.Clone(good)
		i := flip % len(bad)
		if i < 0 {
			i = -i
		}
		bad[i] ^= 0x80
		if _, _, err := keys.open(bad); err == nil {
			t.Fatalf("ticket with byte %d changed opened", i)
		}
	})
}
