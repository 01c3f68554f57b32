package server

import (
	"net/netip"
	"testing"
)

func TestShouldRelease(t *testing.T) {
	for _, c := range []struct {
		peak, sessions int
		want           bool
	}{
		{0, 0, false},
		{50, 0, false}, // a fall smaller than releaseMinDrop is not worth a GC
		{1000, 900, false},
		{1000, 600, false}, // not yet half the peak
		{1000, 500, true},
		{500, 250, true},
		{250, 125, true},
		{150, 40, true},
		{120, 30, false}, // under releaseMinDrop
		{10000, 0, true},
	} {
		if got := shouldRelease(c.peak, c.sessions); got != c.want {
			t.Errorf("shouldRelease(peak %d, now %d) = %v, want %v", c.peak, c.sessions, got, c.want)
		}
	}
}

// After a fall the session and per-source maps are remade at their new
// size, keeping every live entry.
func TestReleaseStepKeepsSessions(t *testing.T) {
	s := &Server{sessions: map[uint64]*session{}, perIP: map[netip.Prefix]int{}}
	for i := range uint64(1000) {
		sess := &session{id: i, clientKey: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 32)}
		s.sessions[sess.id] = sess
		s.perIP[sess.clientKey]++
		s.peak = max(s.peak, len(s.sessions))
	}
	for i := range uint64(900) {
		s.leaveLocked(s.sessions[i].clientKey)
		delete(s.sessions, i)
	}
	release, n, peak, _ := s.releaseStep()
	if !release || n != 100 || peak != 1000 || s.peak != 100 {
		t.Fatalf("releaseStep = %v, %d, %d (peak now %d), want true, 100, 1000 (peak now 100)", release, n, peak, s.peak)
	}
	if len(s.sessions) != 100 || len(s.perIP) != 100 {
		t.Fatalf("after the resize: %d sessions, %d sources, want 100 each", len(s.sessions), len(s.perIP))
	}
	for i := uint64(900); i < 1000; i++ {
		if sess := s.sessions[i]; sess == nil || s.perIP[sess.clientKey] != 1 {
			t.Fatalf("session %d lost in the resize", i)
		}
	}
	if release, _, _, _ := s.releaseStep(); release {
		t.Fatal("released again without a new fall")
	}
}
