package config

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem in a config file, located so an operator can go
// straight to the offending line.
//
// In Key, the [[user]] blocks are counted from 1 in file order ("user[2].root"
// is the root of the second [[user]]), because that is how a person reading
// the file counts them.
type Error struct {
	File string // as given to Load or Parse
	Line int    // 0 if unknown
	Key  string // dotted, e.g. "server.idle_timeout" or "user[2].root"; "" if unknown
	Msg  string // what is wrong and, where it helps, how to fix it

	err error // cause, kept so errors.Is(err, fs.ErrNotExist) works for callers
}

// Error renders "FILE:LINE: KEY: MSG", the format editors and CI logs
// recognise as a jump target; unknown parts are left out.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap exposes the cause (an I/O error) when there is one.
func (e *Error) Unwrap() error { return e.err }

// Errors is all problems of one file, so a single `ftpsd check` run shows
// everything to fix instead of one problem per attempt.
type Errors []*Error

// Error joins the problems one per line, in file order.
func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap lets errors.Is and errors.As look at every problem.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// sortByLine puts problems in file order; those without a line go last, as
// they concern the file as a whole.
func (es Errors) sortByLine() {
	sort.SliceStable(es, func(i, j int) bool {
		li, lj := es[i].Line, es[j].Line
		if li == 0 || lj == 0 {
			return li != 0 && lj == 0
		}
		return li < lj
	})
}
