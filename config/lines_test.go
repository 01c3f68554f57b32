package config

import (
	"strings"
	"testing"
)

const tricky = `# comment = 1
[server]
listen = [
  "0.0.0.0:21", # [ not an array
  '''[::]:990''',
]
"quoted key" = "a = b"
dotted.key = 1
note = """
fake = 1
[tls]
\""""
idle_timeout = "5m"

[ "tls" ]
min_version = '1.2'

[[user]]
name = "a"
[user.extra]
x = 1

[[user]]
name = 'b'
inline = { a = [1,
  2], b = "}" }
root = "/x"
`

func TestKeyLines(t *testing.T) {
	kl := scanKeyLines(tricky)
	for key, want := range map[string]int{
		"server":              2,
		"server.listen":       3,
		`server."quoted key"`: 7,
		"server.dotted":       8,
		"server.dotted.key":   8,
		"server.note":         9,
		"server.idle_timeout": 13,
		"tls":                 15,
		"tls.min_version":     16,
		"user":                18,
		"user[1]":             18,
		"user[1].name":        19,
		"user[1].extra":       20,
		"user[1].extra.x":     21,
		"user[2]":             23,
		"user[2].name":        24,
		"user[2].inline":      25,
		"user[2].root":        27,
	} {
		if got := kl.find(strings.Split(key, ".")); got != want {
			t.Errorf("find(%s) = %d, want %d", key, got, want)
		}
	}
	for _, key := range []string{"fake", "tls.fake", "server.fake", "comment"} {
		if _, ok := kl.at[key]; ok {
			t.Errorf("%s was taken for a key", key)
		}
	}
	// A missing key points at its table.
	if got := kl.find([]string{"user[2]", "password_hash"}); got != 23 {
		t.Errorf("find(user[2].password_hash) = %d, want 23", got)
	}
	if got := kl.find([]string{"firewall", "mode"}); got != 0 {
		t.Errorf("find(firewall.mode) = %d, want 0", got)
	}
}

func TestKeyLinesCRLF(t *testing.T) {
	kl := scanKeyLines("\ufeff[server]\r\nmax_clients = 1\r\n")
	if got := kl.find([]string{"server", "max_clients"}); got != 2 {
		t.Errorf("find = %d, want 2", got)
	}
}

// The scanner also runs on text the decoder rejects: it must never panic.
func FuzzKeyLines(f *testing.F) {
	for _, s := range []string{tricky, "[", "[[", "a.", `"`, `'''`, `"""\`, "a = [{", "[a.\"b", "x = '''\n'''''"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		kl := scanKeyLines(s)
		kl.find([]string{"server", "listen"})
		kl.find([]string{"user[1]", "root"})
	})
}
