package server

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Session tickets are sealed by ftpsd itself (tls.Config WrapSession and
// UnwrapSession) rather than by crypto/tls's built-in keys, for two reasons:
// the ticket must carry the identity of the control connection that issued
// it, so that a data connection can prove it resumes its own control
// session; and crypto/tls accepts its tickets for 7 days with keys kept for
// the life of the process, where ftpsd wants a day at most.
const (
	// ticketRotate is how often a new sealing key is made; a key opens
	// tickets for two periods, so no ticket outlives ticketLifetime.
	ticketRotate = 12 * time.Hour
	// ticketLifetime is the most a ticket is accepted after it was issued.
	ticketLifetime = 2 * ticketRotate
)

// bindToken identifies one control connection inside its tickets.
type bindToken [16]byte

// ticketKeys seals and opens tickets with AES-256-GCM under a current and a
// previous key, rotated every ticketRotate. Keys live only in memory: a
// restart just means full handshakes.
type ticketKeys struct {
	now func() time.Time

	mu      sync.Mutex
	cur     ticketKey
	prev    ticketKey
	rotated time.Time
}

type ticketKey struct {
	name [8]byte
	aead cipher.AEAD
}

const (
	ticketNameLen  = 8
	ticketNonceLen = 12
	ticketHeadLen  = 8 + len(bindToken{}) // issued (unix seconds), token
)

func newTicketKeys(now func() time.Time) (*ticketKeys, error) {
	k := &ticketKeys{now: now}
	if err := k.rotateLocked(now()); err != nil {
		return nil, err
	}
	return k, nil
}

func newTicketKey() (ticketKey, error) {
	var secret [32]byte
	var k ticketKey
	if _, err := rand.Read(secret[:]); err != nil {
		return k, fmt.Errorf("session ticket key: %w", err)
	}
	if _, err := rand.Read(k.name[:]); err != nil {
		return k, fmt.Errorf("session ticket key name: %w", err)
	}
	block, err := aes.NewCipher(secret[:])
	if err != nil {
		return k, fmt.Errorf("session ticket key: %w", err)
	}
	k.aead, err = cipher.NewGCM(block)
	if err != nil {
		return k, fmt.Errorf("session ticket key: %w", err)
	}
	return k, nil
}

func (k *ticketKeys) rotateLocked(now time.Time) error {
	nk, err := newTicketKey()
	if err != nil {
		return err
	}
	k.prev, k.cur, k.rotated = k.cur, nk, now
	return nil
}

// keys returns the current and previous keys, rotating first if due.
func (k *ticketKeys) keys() (ticketKey, ticketKey, time.Time, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	for now.Sub(k.rotated) >= ticketRotate {
		if err := k.rotateLocked(k.rotated.Add(ticketRotate)); err != nil {
			return ticketKey{}, ticketKey{}, now, err
		}
		if now.Sub(k.rotated) >= ticketRotate { // asleep for more than a period: start afresh
			if err := k.rotateLocked(now); err != nil {
				return ticketKey{}, ticketKey{}, now, err
			}
			k.prev = ticketKey{}
		}
	}
	return k.cur, k.prev, now, nil
}

// seal makes a ticket for ss bound to tok.
func (k *ticketKeys) seal(tok bindToken, ss *tls.SessionState) ([]byte, error) {
	state, err := ss.Bytes()
	if err != nil {
		return nil, fmt.Errorf("encode session: %w", err)
	}
	cur, _, now, err := k.keys()
	if err != nil {
		return nil, err
	}
	plain := make([]byte, ticketHeadLen, ticketHeadLen+len(state))
	binary.BigEndian.PutUint64(plain, uint64(now.Unix()))
	copy(plain[8:], tok[:])
	plain = append(plain, state...)
	out := make([]byte, ticketNameLen+ticketNonceLen, ticketNameLen+ticketNonceLen+len(plain)+cur.aead.Overhead())
	copy(out, cur.name[:])
	nonce := out[ticketNameLen:]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("ticket nonce: %w", err)
	}
	return cur.aead.Seal(out, nonce, plain, cur.name[:]), nil
}

var errTicket = errors.New("ticket not accepted")

// openToken checks a ticket's key, seal and age and returns its token and
// the sealed session state, still encoded.
func (k *ticketKeys) openToken(ticket []byte) (bindToken, []byte, error) {
	var tok bindToken
	if len(ticket) < ticketNameLen+ticketNonceLen {
		return tok, nil, errTicket
	}
	cur, prev, now, err := k.keys()
	if err != nil {
		return tok, nil, err
	}
	name, nonce, sealed := ticket[:ticketNameLen], ticket[ticketNameLen:ticketNameLen+ticketNonceLen], ticket[ticketNameLen+ticketNonceLen:]
	var key ticketKey
	switch {
	case string(name) == string(cur.name[:]):
		key = cur
	case prev.aead != nil && string(name) == string(prev.name[:]):
		key = prev
	default:
		return tok, nil, errTicket
	}
	plain, err := key.aead.Open(nil, nonce, sealed, name)
	if err != nil || len(plain) < ticketHeadLen {
		return tok, nil, errTicket
	}
	issued := time.Unix(int64(binary.BigEndian.Uint64(plain)), 0)
	if age := now.Sub(issued); age > ticketLifetime || age < -time.Minute {
		return tok, nil, errTicket
	}
	copy(tok[:], plain[8:ticketHeadLen])
	return tok, plain[ticketHeadLen:], nil
}

// open returns the session a ticket holds and the token it is bound to.
func (k *ticketKeys) open(ticket []byte) (bindToken, *tls.SessionState, error) {
	tok, state, err := k.openToken(ticket)
	if err != nil {
		return tok, nil, err
	}
	ss, err := tls.ParseSessionState(state)
	if err != nil {
		return tok, nil, errTicket
	}
	return tok, ss, nil
}
