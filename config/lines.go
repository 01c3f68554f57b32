package config

import (
	"strconv"
	"strings"
)

// keyLines knows on which line each key of a TOML text is defined. The toml
// decoder keeps key positions to itself, so the source is scanned again here:
// a light lexer that follows tables, [[array]] indexes, strings and brackets
// well enough to find where keys start. It never fails: on text it cannot
// follow it simply knows fewer lines.
type keyLines struct {
	at     map[string]int // joined key path -> first line defining it
	byLine map[int]string // line -> key path defined on it (key or header)
	arrays map[string]int // joined array-of-tables path -> elements seen
	table  []string       // path of the current [table]
	strEnd string         // closing delimiter of an open multi-line string
	depth  int            // open [ and { inside a value
	lineNo int            // 1-based current line
	lost   bool           // a header could not be read: later keys' tables are unknown
}

// scanKeyLines indexes src. Paths use the same segment form as the decoder's
// errors (see segment), with [[array]] elements counted from 1.
func scanKeyLines(src string) *keyLines {
	kl := &keyLines{at: map[string]int{}, byLine: map[int]string{}, arrays: map[string]int{}}
	for i, line := range strings.Split(src, "\n") {
		kl.lineNo = i + 1
		line = strings.TrimSuffix(line, "\r")
		if i == 0 {
			line = strings.TrimPrefix(line, "\ufeff")
		}
		rest := line
		if kl.lost {
			break
		}
		if kl.strEnd == "" && kl.depth == 0 {
			var header bool
			rest, header = kl.statement(line)
			if header {
				continue
			}
		}
		kl.value(rest)
	}
	return kl
}

// find returns the line of path, or of its nearest ancestor that has one,
// so a missing key points at its table header.
func (kl *keyLines) find(path []string) int {
	for n := len(path); n > 0; n-- {
		if l, ok := kl.at[strings.Join(path[:n], ".")]; ok {
			return l
		}
	}
	return 0
}

// statement handles the start of a line outside any value: a table header or
// a key. It returns what is left to lex and whether the line was a header.
func (kl *keyLines) statement(line string) (string, bool) {
	s := strings.TrimLeft(line, " \t")
	switch {
	case s == "" || s[0] == '#':
		return "", false
	case strings.HasPrefix(s, "[["):
		keys, rest, ok := parseDottedKey(s[2:])
		if ok && strings.HasPrefix(strings.TrimLeft(rest, " \t"), "]]") {
			kl.header(keys, true)
		} else {
			kl.lost = true
		}
		return "", true
	case s[0] == '[':
		keys, rest, ok := parseDottedKey(s[1:])
		if ok && strings.HasPrefix(strings.TrimLeft(rest, " \t"), "]") {
			kl.header(keys, false)
		} else {
			kl.lost = true
		}
		return "", true
	}
	keys, rest, ok := parseDottedKey(s)
	if !ok {
		return s, false
	}
	rest = strings.TrimLeft(rest, " \t")
	if !strings.HasPrefix(rest, "=") {
		return rest, false
	}
	path := append(append([]string(nil), kl.table...), segments(keys)...)
	kl.define(path)
	return rest[1:], false
}

// header enters a [table] or a new [[array]] element. Ancestors that are
// arrays of tables refer to their latest element, as in TOML itself.
func (kl *keyLines) header(keys []string, array bool) {
	var path []string
	for i, k := range keys {
		seg := segment(k)
		joined := strings.Join(append(path, seg), ".")
		n := kl.arrays[joined]
		if array && i == len(keys)-1 {
			n++
			kl.arrays[joined] = n
			// The unindexed name points at the first element, for
			// errors about the array as a whole.
			if _, ok := kl.at[joined]; !ok {
				kl.at[joined] = kl.lineNo
			}
		}
		if n > 0 {
			seg += "[" + strconv.Itoa(n) + "]"
		}
		path = append(path, seg)
	}
	kl.table = path
	kl.define(path)
}

// define records path and its ancestors (dotted keys create tables too).
func (kl *keyLines) define(path []string) {
	for n := 1; n <= len(path); n++ {
		j := strings.Join(path[:n], ".")
		if _, ok := kl.at[j]; !ok {
			kl.at[j] = kl.lineNo
		}
	}
	if _, ok := kl.byLine[kl.lineNo]; !ok {
		kl.byLine[kl.lineNo] = strings.Join(path, ".")
	}
}

// value lexes the rest of a line to keep track of multi-line strings and of
// arrays or inline tables that continue on later lines.
func (kl *keyLines) value(s string) {
	for i := 0; i < len(s); {
		if kl.strEnd != "" {
			end := indexDelim(s[i:], kl.strEnd)
			if end < 0 {
				return
			}
			i += end + len(kl.strEnd)
			// Up to two quotes right before the delimiter belong to
			// the string: `"""a"""""` ends at the last three.
			for extra := 0; extra < 2 && i < len(s) && s[i] == kl.strEnd[0]; extra++ {
				i++
			}
			kl.strEnd = ""
			continue
		}
		switch c := s[i]; c {
		case '#':
			return
		case '"', '\'':
			delim := strings.Repeat(string(c), 3)
			if strings.HasPrefix(s[i:], delim) {
				kl.strEnd = delim
				i += 3
				continue
			}
			end := indexDelim(s[i+1:], string(c))
			if end < 0 {
				return // unterminated: a syntax error the decoder reports
			}
			i += 1 + end + 1
			continue
		case '[', '{':
			kl.depth++
		case ']', '}':
			if kl.depth > 0 {
				kl.depth--
			}
		}
		i++
	}
}

// indexDelim finds delim in s, skipping backslash escapes when delim is a
// basic (double-quoted) string's.
func indexDelim(s, delim string) int {
	if delim[0] == '\'' {
		return strings.Index(s, delim)
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
			continue
		}
		if strings.HasPrefix(s[i:], delim) {
			return i
		}
	}
	return -1
}

// parseDottedKey reads a TOML key (bare, "basic", 'literal', dotted) from
// the start of s and returns its parts and the remaining text.
func parseDottedKey(s string) ([]string, string, bool) {
	var keys []string
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return nil, s, false
		}
		var k string
		switch s[0] {
		case '"':
			end := indexDelim(s[1:], `"`)
			if end < 0 {
				return nil, s, false
			}
			raw := s[:end+2]
			var err error
			if k, err = strconv.Unquote(raw); err != nil {
				k = raw[1 : len(raw)-1]
			}
			s = s[end+2:]
		case '\'':
			end := strings.IndexByte(s[1:], '\'')
			if end < 0 {
				return nil, s, false
			}
			k, s = s[1:end+1], s[end+2:]
		default:
			n := 0
			for n < len(s) && isBare(s[n]) {
				n++
			}
			if n == 0 {
				return nil, s, false
			}
			k, s = s[:n], s[n:]
		}
		keys = append(keys, k)
		t := strings.TrimLeft(s, " \t")
		if !strings.HasPrefix(t, ".") {
			return keys, s, true
		}
		s = t[1:]
	}
}

func isBare(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// segment renders one key part the way TOML would need it written, so key
// names in messages can be pasted back into the file.
func segment(k string) string {
	if k == "" {
		return `""`
	}
	for i := 0; i < len(k); i++ {
		if !isBare(k[i]) {
			return strconv.Quote(k)
		}
	}
	return k
}

func segments(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = segment(k)
	}
	return out
}
