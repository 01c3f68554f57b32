package server

import (
	"crypto/tls"
	"errors"
	"net/netip"
	"strings"

	"github.com/ftpsd/ftpsd/driver"
)

// Observer is told what sessions do, for metrics and the transfer log. Its
// methods are called from many sessions at once.
type Observer interface {
	// Login reports a login attempt.
	Login(user string, client netip.Addr, ok bool)
	// Transfer reports an ended RETR, STOR or APPE.
	Transfer(Transfer)
	// TLSFailure reports a failed handshake on a "control", "implicit" or
	// "data" connection.
	TLSFailure(conn string)
}

// Transfer is one ended file transfer.
type Transfer struct {
	driver.TransferRecord
	User   string
	Client netip.Addr
}

type noObserver struct{}

func (noObserver) Login(string, netip.Addr, bool) {}
func (noObserver) Transfer(Transfer)              {}
func (noObserver) TLSFailure(string)              {}

// SetObserver installs o; call it before Listen.
func (s *Server) SetObserver(o Observer) {
	if o == nil {
		o = noObserver{}
	}
	s.obs.Store(&o)
}

func (s *Server) observer() Observer {
	if o := s.obs.Load(); o != nil {
		return *o
	}
	return noObserver{}
}

// transferDone is the driver's OnTransfer for this session.
func (sess *session) transferDone(user string) func(driver.TransferRecord) {
	return func(r driver.TransferRecord) {
		if r.Err != nil && isTLSError(r.Err) {
			sess.srv.observer().TLSFailure("data")
		}
		sess.srv.observer().Transfer(Transfer{TransferRecord: r, User: user, Client: sess.clientIP})
	}
}

// isTLSError reports whether err comes from a TLS handshake or record layer
// rather than from the network or the file system.
func isTLSError(err error) bool {
	var alert tls.AlertError
	var rh tls.RecordHeaderError
	if errors.As(err, &alert) || errors.As(err, &rh) {
		return true
	}
	return strings.Contains(err.Error(), "tls: ")
}

// tlsReason words a TLS failure for the log without the lists crypto/tls
// appends (every cipher suite or version the client offered): they say
// nothing an operator acts on and make one failure a screenful.
func tlsReason(err error) string {
	s := err.Error()
	if i := strings.Index(s, "; client offered"); i >= 0 {
		s = s[:i]
	}
	if i := strings.Index(s, ": ["); i >= 0 {
		s = s[:i]
	}
	return s
}
