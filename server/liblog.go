package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"syscall"
)

// libHandler is the slog handler given to each session's ftpserverlib. It
// keeps only the library's errors (ftpsd logs what an operator needs
// itself), drops the library's clientId attribute (always 1, as every
// session has its own embedded server; ftpsd's session attribute says it),
// and re-levels what is really a client's doing: a TLS handshake the client
// failed or aborted is a WARN without cipher lists, a connection the client
// cut is an INFO, and a refused passive request an INFO (ftpsd already
// answered it).
type libHandler struct {
	h     slog.Handler
	onTLS func()
}

func (l libHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return level >= slog.LevelError && l.h.Enabled(ctx, level)
}

func (l libHandler) Handle(ctx context.Context, r slog.Record) error {
	var err error
	r.Attrs(func(a slog.Attr) bool {
		if e, ok := a.Value.Any().(error); ok && a.Key == "err" {
			err = e
			return false
		}
		return true
	})
	switch {
	case err != nil && isTLSError(err):
		if l.onTLS != nil {
			l.onTLS()
		}
		out := slog.NewRecord(r.Time, slog.LevelWarn, "TLS handshake failed", r.PC)
		out.AddAttrs(slog.String("conn", "control"), slog.String("reason", tlsReason(err)))
		return l.h.Handle(ctx, out)
	case err != nil && clientGone(err), r.Message == "Could not wrap passive connection":
		out := slog.NewRecord(r.Time, slog.LevelInfo, r.Message, r.PC)
		r.Attrs(func(a slog.Attr) bool { out.AddAttrs(a); return true })
		return l.h.Handle(ctx, out)
	}
	return l.h.Handle(ctx, r)
}

func (l libHandler) WithAttrs(as []slog.Attr) slog.Handler {
	kept := make([]slog.Attr, 0, len(as))
	for _, a := range as {
		if a.Key != "clientId" {
			kept = append(kept, a)
		}
	}
	return libHandler{l.h.WithAttrs(kept), l.onTLS}
}

func (l libHandler) WithGroup(name string) slog.Handler {
	return libHandler{l.h.WithGroup(name), l.onTLS}
}

// clientGone reports errors that mean the peer went away or stalled.
func clientGone(err error) bool {
	var ne net.Error
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed) || (errors.As(err, &ne) && ne.Timeout())
}
