package server

import (
	"time"
)

// revokeWithin bounds how long a revoked session may take to end: first
// with a 421 reply, then, if the session never got back to reading a
// command, by closing its connection.
const revokeWithin = 1500 * time.Millisecond

// sameGrant reports whether a login made with a still holds under b: same
// password, same root, same write access.
func sameGrant(a, b *account) bool {
	return a != nil && b != nil && a.PasswordHash == b.PasswordHash && a.Root == b.Root && a.ReadOnly == b.ReadOnly
}

// stillGranted is checked right after a successful login: a login checked
// against the user table a reload has just replaced is refused if the
// reload changed that user, since the reload's revocation sweep may have
// missed it.
func (s *Server) stillGranted(acc *account) bool {
	return sameGrant(acc, s.users.Load().byName[acc.Name])
}

// revoke ends every live session whose user was removed by a reload or
// whose password_hash, root or read_only changed; other sessions go on.
// It returns how many sessions it ends.
func (s *Server) revoke(prev, cur *accounts) int {
	n := 0
	for _, sess := range s.liveSessions() {
		sess.mu.Lock()
		user := sess.user
		sess.mu.Unlock()
		if user == "" {
			continue
		}
		before, now := prev.byName[user], cur.byName[user]
		if sameGrant(before, now) {
			continue
		}
		reason := "user changed"
		if now == nil {
			reason = "user removed"
		}
		n++
		go sess.revoke(reason)
	}
	return n
}

// revoke ends the session with a 421. ftpserverlib has no call that sends
// a reply and closes (ClientContext.Close deliberately sends nothing), but
// it answers a control read that times out with "421 ... closing control
// connection" and ends the session; so the session's transfer is cut and
// its control read deadline set to now, repeatedly, since ftpserverlib
// sets its own deadline before each command. The upstream change that
// would make this direct: a ClientContext method to close with a reply.
func (sess *session) revoke(reason string) {
	sess.log.Info("session revoked by reload", "user", sess.userName(), "reason", reason)
	sess.mu.Lock()
	lease, data := sess.lease, sess.data
	sess.mu.Unlock()
	if data != nil {
		data.Close()
	}
	if lease != nil {
		lease.Close()
	}
	deadline := time.Now().Add(revokeWithin)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		sess.ln.conn.SetReadDeadline(time.Now())
		<-tick.C
		if !sess.srv.live(sess) {
			return
		}
	}
	sess.close()
}

func (sess *session) userName() string {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	return sess.user
}

// live reports whether the session is still registered.
func (s *Server) live(sess *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.sessions[sess.id]
	return ok
}
