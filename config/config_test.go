package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

var testHash = sync.OnceValue(func() string {
	h, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
})

// fixture is a temporary directory holding config files and the paths they
// point at.
type fixture struct {
	t    *testing.T
	dir  string
	root string // an existing directory usable as a user root
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{t: t, dir: dir, root: filepath.Join(dir, "files")}
	if err := os.Mkdir(f.root, 0o755); err != nil {
		t.Fatal(err)
	}
	return f
}

// expand fills {hash}, {root} and {dir} in a config text.
func (f *fixture) expand(s string) string {
	return strings.NewReplacer("{hash}", testHash(), "{root}", f.root, "{dir}", f.dir).Replace(s)
}

// write puts content (expanded) at dir/name and returns the path.
func (f *fixture) write(name, content string) string {
	f.t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(f.expand(content)), 0o600); err != nil {
		f.t.Fatal(err)
	}
	return p
}

func mustLoad(t *testing.T, path string) *Config {
	t.Helper()
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	return cfg
}

func loadErrors(t *testing.T, path string) Errors {
	t.Helper()
	cfg, err := Load(path)
	if err == nil {
		t.Fatalf("Load(%s) succeeded, want errors; got %+v", path, cfg)
	}
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("Load(%s) error is %T, want Errors: %v", path, err, err)
	}
	return es
}

// markerLine is the 1-based line holding "# <-", or 0 if none does.
func markerLine(s string) int {
	for i, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "# <-") {
			return i + 1
		}
	}
	return 0
}

const s3Table = "[storage.s3]\nendpoint = \"http://127.0.0.1:8333\"\npath_style = true\n"

const oneUser = `
[[user]]
name = "alice"
password_hash = "{hash}"
root = "{root}"
`

func TestErrors(t *testing.T) {
	cases := []struct {
		name string
		toml string // "# <-" marks the line the error must name; none: line 0
		key  string
		msg  string
		more bool // other errors are expected too
	}{
		// Syntax errors, located by the decoder, keyed by the line's key.
		{name: "syntax/unquoted duration", toml: "[server]\nidle_timeout = 5m # <-\n" + oneUser,
			key: "server.idle_timeout", msg: "expected"},
		{name: "syntax/newline in string in second user", toml: oneUser + "\n[[user]]\nname = \"bob # <-\n",
			key: "user[2].name", msg: "newline"},
		{name: "syntax/duplicate key", toml: "[firewall]\nmode = \"off\"\nmode = \"off\" # <-\n" + oneUser,
			key: "firewall.mode", msg: "already been defined"},

		// Unknown keys, one error each.
		{name: "unknown/in server", toml: "[server]\nlisten = [\"0.0.0.0:2121\"]\nlisen = [\"0.0.0.0:21\"] # <-\n" + oneUser,
			key: "server.lisen", msg: "unknown key"},
		{name: "unknown/in second user", toml: oneUser + "\n[[user]]\nname = \"bob\"\npassword_hash = \"{hash}\"\nroot = \"{root}\"\nshell = \"/bin/sh\" # <-\n",
			key: "user[2].shell", msg: "unknown key"},
		{name: "unknown/table", toml: "[logging] # <-\nlevel = \"debug\"\n" + oneUser,
			key: "logging", msg: "unknown key"},
		{name: "unknown/wrong case", toml: "[server]\nListen = [\"0.0.0.0:2121\"] # <-\n" + oneUser,
			key: "server.Listen", msg: `case-sensitive: did you mean "listen"`},
		{name: "unknown/above first table", toml: "listen = [\"0.0.0.0:2121\"] # <-\n" + oneUser,
			key: "listen", msg: "did you mean server.listen"},
		{name: "unknown/quoted key", toml: "[tls]\n\"cert file\" = \"x\" # <-\n" + oneUser,
			key: `tls."cert file"`, msg: "unknown key"},

		// Service keys.
		{name: "service/run_as unknown", toml: "[server]\nrun_as = \"no-such-account-ftpsd\" # <-\n" + oneUser,
			key: "server.run_as", msg: "does not exist"},
		{name: "service/run_as root", toml: "[server]\nrun_as = \"root\" # <-\n" + oneUser,
			key: "server.run_as", msg: "is root"},
		{name: "service/umask not octal", toml: "[server]\numask = \"089\" # <-\n" + oneUser,
			key: "server.umask", msg: "octal mask"},
		{name: "service/umask too big", toml: "[server]\numask = \"1777\" # <-\n" + oneUser,
			key: "server.umask", msg: "octal mask"},
		{name: "service/umask number", toml: "[server]\numask = 22 # <-\n" + oneUser,
			key: "server.umask", msg: "must be a string"},
		{name: "service/user umask", toml: oneUser + "umask = \"8\" # <-\n",
			key: "user[1].umask", msg: "octal mask"},
		{name: "log/format", toml: "[log]\nformat = \"xml\" # <-\n" + oneUser,
			key: "log.format", msg: `must be "text" or "json"`},
		{name: "metrics/listen", toml: "[metrics]\nlisten = \"localhost\" # <-\n" + oneUser,
			key: "metrics.listen", msg: "invalid address"},

		// Durations.
		{name: "duration/bad", toml: "[server]\nidle_timeout = \"5 minutes\" # <-\n" + oneUser,
			key: "server.idle_timeout", msg: "invalid duration"},
		{name: "duration/zero", toml: "[server]\ndata_timeout = \"0s\" # <-\n" + oneUser,
			key: "server.data_timeout", msg: "must be positive"},
		{name: "duration/negative", toml: "[firewall]\npinhole_timeout = \"-1s\" # <-\n" + oneUser,
			key: "firewall.pinhole_timeout", msg: "must be positive"},
		{name: "mark/zero", toml: "[firewall]\nmark = \"0x0\" # <-\n" + oneUser,
			key: "firewall.mark", msg: "must not be 0"},
		{name: "mark/outside mask", toml: "[firewall]\nmark = \"0x100/0xff\" # <-\n" + oneUser,
			key: "firewall.mark", msg: "bits outside the mask"},
		{name: "mark/not a number", toml: "[firewall]\nmark = \"red\" # <-\n" + oneUser,
			key: "firewall.mark", msg: "not a 32-bit number"},
		{name: "duration/number", toml: "[server]\nidle_timeout = 300 # <-\n" + oneUser,
			key: "server.idle_timeout", msg: "must be a duration string"},

		// [ban], [passive] max_per_ip, session reuse.
		{name: "ban/max_failures zero", toml: "[ban]\nmax_failures = 0 # <-\n" + oneUser,
			key: "ban.max_failures", msg: "at least 1"},
		{name: "ban/window zero", toml: "[ban]\nwindow = \"0s\" # <-\n" + oneUser,
			key: "ban.window", msg: "must be positive"},
		{name: "ban/duration bad", toml: "[ban]\nduration = \"forever\" # <-\n" + oneUser,
			key: "ban.duration", msg: "invalid duration"},
		{name: "ban/allow not a CIDR", toml: "[ban]\nallow = [\"10.0.0.0/8\", \"example.com\"] # <-\n" + oneUser,
			key: "ban.allow", msg: `"example.com" is not an address or CIDR`},
		{name: "server/proxy_protocol not a CIDR", toml: "[server]\nproxy_protocol = [\"10.0.0.0/8\", \"lb.example\"] # <-\n" + oneUser,
			key: "server.proxy_protocol", msg: `"lb.example" is not an address or CIDR`},
		{name: "server/proxy_protocol bad length", toml: "[server]\nproxy_protocol = [\"10.0.0.0/40\"] # <-\n" + oneUser,
			key: "server.proxy_protocol", msg: "the balancers that send the PROXY header"},
		{name: "server/proxy_protocol everything", toml: "[server]\nproxy_protocol = [\"10.0.0.1\", \"::/0\"] # <-\n" + oneUser,
			key: "server.proxy_protocol", msg: `"::/0" trusts every address`},
		{name: "server/proxy_protocol not a list", toml: "[server]\nproxy_protocol = \"10.0.0.0/8\" # <-\n" + oneUser,
			key: "server.proxy_protocol", msg: "must be an array of strings"},
		{name: "server/proxy_protocol number", toml: "[server]\nproxy_protocol = [10] # <-\n" + oneUser,
			key: "server.proxy_protocol", msg: "element 1 must be a string"},
		{name: "ban/allow bad length", toml: "[ban]\nallow = [\"10.0.0.0/33\"] # <-\n" + oneUser,
			key: "ban.allow", msg: "not an address or CIDR"},
		{name: "ban/ipv6_prefix too long", toml: "[ban]\nipv6_prefix = 129 # <-\n" + oneUser,
			key: "ban.ipv6_prefix", msg: "from 1 to 128"},
		{name: "ban/unknown key", toml: "[ban]\nmax_failure = 3 # <-\n" + oneUser,
			key: "ban.max_failure", msg: "unknown key"},
		{name: "passive/max_per_ip over range", toml: "[passive]\nports = \"50000-50009\"\nmax_per_ip = 11 # <-\n" + oneUser,
			key: "passive.max_per_ip", msg: "number of passive ports (10)"},
		{name: "passive/max_per_ip negative", toml: "[passive]\nmax_per_ip = -1 # <-\n" + oneUser,
			key: "passive.max_per_ip", msg: "not -1"},
		{name: "tls/require_session_reuse string", toml: "[tls]\nrequire_session_reuse = \"no\" # <-\n" + oneUser,
			key: "tls.require_session_reuse", msg: "true or false"},
		{name: "user/require_session_reuse string", toml: oneUser + "require_session_reuse = 0 # <-\n",
			key: "user[1].require_session_reuse", msg: "true or false"},
		{name: "duration/inline table", toml: "server = { idle_timeout = \"soon\" } # <-\n" + oneUser,
			key: "server.idle_timeout", msg: "invalid duration"},
		{name: "duration/dotted key", toml: "server.idle_timeout = \"soon\" # <-\n" + oneUser,
			key: "server.idle_timeout", msg: "invalid duration"},

		// Passive port ranges.
		{name: "ports/syntax", toml: "[passive]\nports = \"50000:50999\" # <-\n" + oneUser,
			key: "passive.ports", msg: "invalid port range"},
		{name: "ports/not a number", toml: "[passive]\nports = \"low-high\" # <-\n" + oneUser,
			key: "passive.ports", msg: "invalid port range"},
		{name: "ports/open end", toml: "[passive]\nports = \"50000-\" # <-\n" + oneUser,
			key: "passive.ports", msg: "invalid port range"},
		{name: "ports/reversed", toml: "[passive]\nports = \"50999-50000\" # <-\n" + oneUser,
			key: "passive.ports", msg: "reversed"},
		{name: "ports/above 65535", toml: "[passive]\nports = \"60000-70000\" # <-\n" + oneUser,
			key: "passive.ports", msg: "within 1024-65535"},
		{name: "ports/below 1024", toml: "[passive]\nports = \"80-90\" # <-\n" + oneUser,
			key: "passive.ports", msg: "within 1024-65535"},
		{name: "ports/integer", toml: "[passive]\nports = 50000 # <-\n" + oneUser,
			key: "passive.ports", msg: "must be a string"},

		// Listeners.
		{name: "listen/overlap 0.0.0.0 and ::", toml: "[server]\nlisten = [\"0.0.0.0:2121\", \"[::]:2121\"] # <-\n" + oneUser,
			key: "server.listen", msg: `"[::]:2121" overlaps "0.0.0.0:2121"`},
		{name: "listen/overlap across implicit", toml: "[server]\nlisten = [\"[::]:2121\"]\nimplicit_listen = [\"0.0.0.0:2121\"] # <-\n" + oneUser,
			key: "server.implicit_listen", msg: "(server.listen)"},
		{name: "listen/overlap equal", toml: "[server]\nlisten = [\"127.0.0.1:2121\", \"127.0.0.1:2121\"] # <-\n" + oneUser,
			key: "server.listen", msg: "overlaps"},
		{name: "listen/overlap empty host", toml: "[server]\nlisten = [\":2121\"]\nimplicit_listen = [\"10.0.0.1:2121\"] # <-\n" + oneUser,
			key: "server.implicit_listen", msg: "overlaps"},
		{name: "listen/overlap v4-mapped", toml: "[server]\nlisten = [\"127.0.0.1:2121\", \"[::ffff:127.0.0.1]:2121\"] # <-\n" + oneUser,
			key: "server.listen", msg: "overlaps"},
		{name: "listen/no port", toml: "[server]\nlisten = [\"0.0.0.0\"] # <-\n" + oneUser,
			key: "server.listen", msg: `invalid address "0.0.0.0"`},
		{name: "listen/host name", toml: "[server]\nlisten = [\"ftp.example.com:21\"] # <-\n" + oneUser,
			key: "server.listen", msg: "host must be an IP address"},
		{name: "listen/port too big", toml: "[server]\nlisten = [\"1.2.3.4:99999\"] # <-\n" + oneUser,
			key: "server.listen", msg: "port must be a number"},
		{name: "listen/port zero", toml: "[server]\nlisten = [\"1.2.3.4:0\"] # <-\n" + oneUser,
			key: "server.listen", msg: "port must be a number"},
		{name: "listen/service name", toml: "[server]\nlisten = [\"1.2.3.4:ftp\"] # <-\n" + oneUser,
			key: "server.listen", msg: "port must be a number"},
		{name: "listen/bad brackets", toml: "[server]\nimplicit_listen = [\"[::1:990\"] # <-\n" + oneUser,
			key: "server.implicit_listen", msg: "invalid address"},
		{name: "listen/in passive range", toml: "[server]\nlisten = [\"0.0.0.0:50010\"] # <-\n" + oneUser,
			key: "server.listen", msg: "lies in passive.ports 50000-50999"},
		{name: "listen/none", toml: "[server]\nlisten = [] # <-\nimplicit_listen = []\n" + oneUser,
			key: "server.listen", msg: "no listener"},
		{name: "listen/string not array", toml: "[server]\nlisten = \"0.0.0.0:21\" # <-\n" + oneUser,
			key: "server.listen", msg: "must be an array of strings, not a string"},
		{name: "listen/number element", toml: "[server]\nlisten = [\"0.0.0.0:2121\", 21] # <-\n" + oneUser,
			key: "server.listen", msg: "element 2 must be a string"},

		// Users.
		{name: "user/root does not exist", toml: "[[user]]\nname = \"alice\"\npassword_hash = \"{hash}\"\nroot = \"{dir}/nope\" # <-\n",
			key: "user[1].root", msg: "does not exist"},
		{name: "user/root is a file", toml: "[[user]]\nname = \"alice\"\npassword_hash = \"{hash}\"\nroot = \"{dir}/ftpsd.toml\" # <-\n",
			key: "user[1].root", msg: "is not a directory"},
		{name: "user/root empty", toml: "[[user]]\nname = \"alice\"\npassword_hash = \"{hash}\"\nroot = \"\" # <-\n",
			key: "user[1].root", msg: "must not be empty"},
		{name: "user/root missing", toml: "[[user]] # <-\nname = \"alice\"\npassword_hash = \"{hash}\"\n",
			key: "user[1].root", msg: "missing"},
		{name: "s3/root without storage.s3", toml: "[[user]]\nname = \"alice\"\npassword_hash = \"{hash}\"\nroot = \"s3://bucket/alice\" # <-\n",
			key: "user[1].root", msg: "needs a [storage.s3] table"},
		{name: "s3/bad bucket", toml: s3Table + "[[user]]\nname = \"alice\"\npassword_hash = \"{hash}\"\nroot = \"s3://My_Bucket/alice\" # <-\n",
			key: "user[1].root", msg: "not a valid S3 bucket name"},
		{name: "s3/dotdot prefix", toml: s3Table + "[[user]]\nname = \"alice\"\npassword_hash = \"{hash}\"\nroot = \"s3://bucket/a/../b\" # <-\n",
			key: "user[1].root", msg: "plain path segments"},
		{name: "s3/secret in toml", toml: "[storage.s3]\nendpoint = \"https://s3.example.com\"\naws_secret_access_key = \"x\" # <-\n" + oneUser,
			key: "storage.s3.aws_secret_access_key", msg: "do not belong in the config file"},
		{name: "s3/endpoint scheme", toml: "[storage.s3]\nendpoint = \"ftp://s3.example.com\" # <-\n" + oneUser,
			key: "storage.s3.endpoint", msg: "scheme must be https"},
		{name: "s3/endpoint with path", toml: "[storage.s3]\nendpoint = \"https://s3.example.com/bucket\" # <-\n" + oneUser,
			key: "storage.s3.endpoint", msg: "scheme://host[:port] only"},
		{name: "s3/endpoint missing", toml: "[storage.s3] # <-\nregion = \"x\"\n" + oneUser,
			key: "storage.s3.endpoint", msg: "missing"},
		{name: "s3/ip endpoint without path style", toml: "[storage.s3] # <-\nendpoint = \"http://127.0.0.1:8333\"\n" + oneUser,
			key: "storage.s3.path_style", msg: "set path_style = true"},
		{name: "s3/unknown key", toml: "[storage.s3]\nendpoint = \"https://s3.example.com\"\npathstyle = true # <-\n" + oneUser,
			key: "storage.s3.pathstyle", msg: "unknown key"},
		{name: "user/duplicate name", toml: oneUser + "\n[[user]]\nname = \"alice\" # <-\npassword_hash = \"{hash}\"\nroot = \"{root}\"\n",
			key: "user[2].name", msg: `duplicate user name "alice" (also user[1], line 3)`},
		{name: "user/name missing", toml: "[[user]] # <-\npassword_hash = \"{hash}\"\nroot = \"{root}\"\n",
			key: "user[1].name", msg: "missing"},
		{name: "user/name empty", toml: "[[user]]\nname = \"\" # <-\npassword_hash = \"{hash}\"\nroot = \"{root}\"\n",
			key: "user[1].name", msg: "must not be empty"},
		{name: "user/name with space", toml: "[[user]]\nname = \"al ice\" # <-\npassword_hash = \"{hash}\"\nroot = \"{root}\"\n",
			key: "user[1].name", msg: "whitespace"},
		{name: "user/name with control", toml: "[[user]]\nname = \"al\\u0007ice\" # <-\npassword_hash = \"{hash}\"\nroot = \"{root}\"\n",
			key: "user[1].name", msg: "control"},
		{name: "user/password_hash missing", toml: "[[user]] # <-\nname = \"alice\"\nroot = \"{root}\"\n",
			key: "user[1].password_hash", msg: "missing: make one with `ftpsd passwd`"},
		{name: "user/password_hash plaintext", toml: "[[user]]\nname = \"alice\"\npassword_hash = \"hunter2\" # <-\nroot = \"{root}\"\n",
			key: "user[1].password_hash", msg: "not a bcrypt hash"},
		{name: "user/password_hash empty", toml: "[[user]]\nname = \"alice\"\npassword_hash = \"\" # <-\nroot = \"{root}\"\n",
			key: "user[1].password_hash", msg: "must not be empty"},
		{name: "user/password_hash wrong variant", toml: "[[user]]\nname = \"alice\"\npassword_hash = \"$2x$" + testHash()[4:] + "\" # <-\nroot = \"{root}\"\n",
			key: "user[1].password_hash", msg: "not a bcrypt hash"},
		{name: "user/password_hash truncated", toml: "[[user]]\nname = \"alice\"\npassword_hash = \"" + testHash()[:59] + "\" # <-\nroot = \"{root}\"\n",
			key: "user[1].password_hash", msg: "not a bcrypt hash"},
		{name: "user/password_hash bad cost", toml: "[[user]]\nname = \"alice\"\npassword_hash = \"" + testHash()[:4] + "03" + testHash()[6:] + "\" # <-\nroot = \"{root}\"\n",
			key: "user[1].password_hash", msg: "bcrypt cost 3 is outside 4..31"},
		{name: "user/none", toml: "[server]\nlisten = [\"0.0.0.0:2121\"]\n",
			key: "user", msg: "no [[user]] defined"},
		{name: "user/empty array", toml: "user = [] # <-\n",
			key: "user", msg: "no [[user]] defined"},
		{name: "user/single table", toml: "[user] # <-\nname = \"alice\"\n",
			key: "user", msg: "must be an array of tables ([[user]]), not a table"},
		{name: "user/read_only string", toml: "[[user]]\nname = \"alice\"\npassword_hash = \"{hash}\"\nroot = \"{root}\"\nread_only = \"yes\" # <-\n",
			key: "user[1].read_only", msg: "must be true or false, not a string"},

		// TLS.
		{name: "tls/min_version", toml: "[tls]\nmin_version = \"1.1\" # <-\n" + oneUser,
			key: "tls.min_version", msg: `must be "1.2" or "1.3"`},
		{name: "tls/min_version float", toml: "[tls]\nmin_version = 1.3 # <-\n" + oneUser,
			key: "tls.min_version", msg: "must be a string, not a float"},
		{name: "tls/cert only", toml: "[tls] # <-\ncert_file = \"{dir}/ftpsd.toml\"\n" + oneUser,
			key: "tls.key_file", msg: "missing: cert_file is set"},
		{name: "tls/key only", toml: "[tls] # <-\nkey_file = \"{dir}/ftpsd.toml\"\n" + oneUser,
			key: "tls.cert_file", msg: "missing: key_file is set"},
		{name: "tls/key empty", toml: "[tls]\ncert_file = \"{dir}/ftpsd.toml\"\nkey_file = \"\" # <-\n" + oneUser,
			key: "tls.key_file", msg: "missing: cert_file is set"},
		{name: "tls/cert file missing", toml: "[tls]\ncert_file = \"{dir}/cert.pem\" # <-\nkey_file = \"{dir}/ftpsd.toml\"\n" + oneUser,
			key: "tls.cert_file", msg: "cert.pem does not exist"},
		{name: "tls/key file missing", toml: "[tls]\ncert_file = \"{dir}/ftpsd.toml\"\nkey_file = \"key.pem\" # <-\n" + oneUser,
			key: "tls.key_file", msg: "key.pem does not exist"},
		{name: "tls/cert is a directory", toml: "[tls]\ncert_file = \"{root}\" # <-\nkey_file = \"{dir}/ftpsd.toml\"\n" + oneUser,
			key: "tls.cert_file", msg: "is a directory"},
		{name: "tls/require string", toml: "[tls]\nrequire = \"yes\" # <-\n" + oneUser,
			key: "tls.require", msg: "must be true or false"},

		// Firewall.
		{name: "firewall/mode", toml: "[firewall]\nmode = \"iptables\" # <-\n" + oneUser,
			key: "firewall.mode", msg: `must be "nftables" or "off"`},
		{name: "firewall/table space", toml: "[firewall]\ntable = \"ftp sd\" # <-\n" + oneUser,
			key: "firewall.table", msg: "must be 1 to 64 characters"},
		{name: "firewall/table empty", toml: "[firewall]\ntable = \"\" # <-\n" + oneUser,
			key: "firewall.table", msg: "must be 1 to 64 characters"},
		{name: "firewall/table too long", toml: "[firewall]\ntable = \"" + strings.Repeat("t", 65) + "\" # <-\n" + oneUser,
			key: "firewall.table", msg: "must be 1 to 64 characters"},

		// Server scalars.
		{name: "public_host/name", toml: "[server]\npublic_host = \"ftp.example.com\" # <-\n" + oneUser,
			key: "server.public_host", msg: "must be an IPv4 address"},
		{name: "public_host/ipv6", toml: "[server]\npublic_host = \"2001:db8::1\" # <-\n" + oneUser,
			key: "server.public_host", msg: "must be an IPv4 address"},
		{name: "public_host/v4-mapped", toml: "[server]\npublic_host = \"::ffff:192.0.2.1\" # <-\n" + oneUser,
			key: "server.public_host", msg: "must be an IPv4 address"},
		{name: "max_clients/zero", toml: "[server]\nmax_clients = 0 # <-\n" + oneUser,
			key: "server.max_clients", msg: "must be at least 1"},
		{name: "max_clients/string", toml: "[server]\nmax_clients = \"many\" # <-\n" + oneUser,
			key: "server.max_clients", msg: "must be an integer, not a string"},
		{name: "max_clients_per_ip/zero", toml: "[server]\nmax_clients_per_ip = 0 # <-\n" + oneUser,
			key: "server.max_clients_per_ip", msg: "must be at least 1"},
		{name: "max_clients_per_ip/above max", toml: "[server]\nmax_clients = 10\nmax_clients_per_ip = 11 # <-\n" + oneUser,
			key: "server.max_clients_per_ip", msg: "must not exceed max_clients (10)"},

		// Tables of the wrong shape.
		{name: "shape/server scalar", toml: "server = 5 # <-\n" + oneUser,
			key: "server", msg: "must be a table ([server]), not an integer"},
		{name: "shape/server array", toml: "[[server]] # <-\nlisten = []\n" + oneUser,
			key: "server", msg: "must be a table ([server]), not an array of tables"},
		{name: "storage/state_dir empty", toml: "[storage]\nstate_dir = \"\" # <-\n" + oneUser,
			key: "storage.state_dir", msg: "must not be empty"},
		{name: "storage/fsync unknown", toml: "[storage]\nfsync = \"sometimes\" # <-\n" + oneUser,
			key: "storage.fsync", msg: `must be "always" or "never", not "sometimes"`},
		{name: "storage/fsync bool", toml: "[storage]\nfsync = false # <-\n" + oneUser,
			key: "storage.fsync", msg: "must be a string, not a boolean"},

		// The line scanner must not be fooled by values spanning lines.
		{name: "lines/after multi-line values", more: true, toml: "[server]\n" +
			"listen = [\n  \"0.0.0.0:2121\", # a [ in a comment\n  \"]\",\n]\n" +
			"note = \"\"\"\nidle_timeout = \"x\"\n[tls]\n\"\"\"\n" +
			"idle_timeout = \"forever\" # <-\n" + oneUser,
			key: "server.idle_timeout", msg: "invalid duration"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			path := f.write("ftpsd.toml", tc.toml)
			es := loadErrors(t, path)
			want := markerLine(f.expand(tc.toml))
			var got *Error
			for _, e := range es {
				if e.Key == tc.key {
					got = e
					break
				}
			}
			if got == nil {
				t.Fatalf("no error for key %q; got:\n%v", tc.key, es)
			}
			if !tc.more && len(es) != 1 {
				t.Errorf("got %d errors, want 1:\n%v", len(es), es)
			}
			if got.File != path || got.Line != want {
				t.Errorf("error at %s:%d, want %s:%d: %v", got.File, got.Line, path, want, got)
			}
			if !strings.Contains(got.Msg, tc.msg) {
				t.Errorf("message %q does not contain %q", got.Msg, tc.msg)
			}
			prefix := fmt.Sprintf("%s:%d: %s: ", path, want, tc.key)
			if want == 0 {
				prefix = fmt.Sprintf("%s: %s: ", path, tc.key)
			}
			if s := got.Error(); !strings.HasPrefix(s, prefix) {
				t.Errorf("Error() = %q, want prefix %q", s, prefix)
			}
		})
	}
}

// A hash field may hold a pasted plaintext password: it must not be echoed.
func TestPasswordNotEchoed(t *testing.T) {
	f := newFixture(t)
	path := f.write("ftpsd.toml", "[[user]]\nname = \"alice\"\npassword_hash = \"Tr0ub4dor&3\"\nroot = \"{root}\"\n")
	if es := loadErrors(t, path); strings.Contains(es.Error(), "Tr0ub4dor") {
		t.Errorf("error repeats the password: %v", es)
	}
}

func TestAllErrorsInFileOrder(t *testing.T) {
	f := newFixture(t)
	path := f.write("ftpsd.toml", `[server]
max_clients = 0
bogus = true
data_timeout = "1 minute"

[firewall]
mode = "iptables"

[[user]]
name = "alice"
password_hash = "nope"
root = "{dir}/missing"

[[user]]
name = "alice"
password_hash = "{hash}"
root = "{root}"
`)
	es := loadErrors(t, path)
	want := []struct {
		line int
		key  string
	}{
		{2, "server.max_clients"},
		{3, "server.bogus"},
		{4, "server.data_timeout"},
		{7, "firewall.mode"},
		{11, "user[1].password_hash"},
		{12, "user[1].root"},
		{15, "user[2].name"},
	}
	if len(es) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(es), len(want), es)
	}
	for i, w := range want {
		if es[i].Line != w.line || es[i].Key != w.key {
			t.Errorf("error %d = line %d key %s, want line %d key %s", i, es[i].Line, es[i].Key, w.line, w.key)
		}
	}
	if lines := strings.Split(es.Error(), "\n"); len(lines) != len(want) {
		t.Errorf("Error() has %d lines, want %d:\n%s", len(lines), len(want), es.Error())
	}
}

func TestFullConfig(t *testing.T) {
	f := newFixture(t)
	f.write("tls/cert.pem", "cert")
	f.write("tls/key.pem", "key")
	if err := os.MkdirAll(filepath.Join(f.dir, "bob"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := f.write("ftpsd.toml", `# every key of DESIGN.md §5, none at its default
[server]
listen = ["192.0.2.1:2121", "[2001:db8::1]:2121"]
implicit_listen = ["0.0.0.0:990"]
public_host = "203.0.113.7"
max_clients = 100
max_clients_per_ip = 5
idle_timeout = "10m"
data_timeout = "15s"
run_as = "nobody"
umask = "027"
proxy_protocol = ["10.0.0.7/8", "192.0.2.9", "2001:db8:aa::/48", "::ffff:198.51.100.0/120"]

[tls]
cert_file = "tls/cert.pem"
key_file = "{dir}/tls/key.pem"
min_version = "1.3"
require = false
require_session_reuse = false

[passive]
ports = "40000-40099"
max_per_ip = 7

[firewall]
mode = "off"
table = "ftpsd_test-1"
pinhole_timeout = "1m30s"
mark = "0xf70000/0xff0000"

[storage]
state_dir = "state"

[log]
format = "json"
xferlog = "log/xferlog"

[metrics]
listen = "127.0.0.1:9120"
[ban]
max_failures = 3
window = "1m"
duration = "2h"
allow = ["192.0.2.7/24", "2001:db8::1", "::ffff:198.51.100.0/120"]
ipv6_prefix = 56

[[user]]
name = "alice"
password_hash = "{hash}"
root = "{root}"
read_only = false

[[user]]
name = "bob"
password_hash = "{hash}"
root = "bob"
read_only = true
umask = "002"
require_session_reuse = true
`)
	got := mustLoad(t, path)
	want := &Config{
		Server: Server{
			Listen:          []string{"192.0.2.1:2121", "[2001:db8::1]:2121"},
			ImplicitListen:  []string{"0.0.0.0:990"},
			PublicHost:      "203.0.113.7",
			MaxClients:      100,
			MaxClientsPerIP: 5,
			IdleTimeout:     10 * time.Minute,
			DataTimeout:     15 * time.Second,
			RunAs:           "nobody",
			Umask:           0o027,
			ProxyProtocol: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.9/32"),
				netip.MustParsePrefix("2001:db8:aa::/48"), netip.MustParsePrefix("198.51.100.0/24")},
		},
		TLS: TLS{
			CertFile:   filepath.Join(f.dir, "tls/cert.pem"),
			KeyFile:    filepath.Join(f.dir, "tls/key.pem"),
			MinVersion: tls.VersionTLS13,
			Require:    false,
		},
		Passive:  Passive{PortMin: 40000, PortMax: 40099, MaxPerIP: 7},
		Firewall: Firewall{Mode: "off", Table: "ftpsd_test-1", PinholeTimeout: 90 * time.Second, Mark: 0xf70000, MarkMask: 0xff0000},
		Storage:  Storage{StateDir: filepath.Join(f.dir, "state")},
		Log:      Log{Format: "json", Xferlog: filepath.Join(f.dir, "log/xferlog")},
		Metrics:  Metrics{Listen: "127.0.0.1:9120"},
		Ban: Ban{MaxFailures: 3, Window: time.Minute, Duration: 2 * time.Hour, IPv6Prefix: 56, Allow: []netip.Prefix{
			netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::1/128"), netip.MustParsePrefix("198.51.100.0/24")}},
		Users: []User{
			{Name: "alice", PasswordHash: testHash(), Root: f.root, Umask: 0o027},
			{Name: "bob", PasswordHash: testHash(), Root: filepath.Join(f.dir, "bob"), ReadOnly: true, Umask: 0o002, RequireSessionReuse: true},
		},
		Source: path,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
	}
}

// The example of DESIGN.md §5, verbatim but for a real hash and root.
func TestDesignExample(t *testing.T) {
	f := newFixture(t)
	path := f.write("ftpsd.toml", `[server]
listen = ["0.0.0.0:21"]          # explicit FTPS (AUTH TLS) control listeners
implicit_listen = []              # implicit FTPS listeners, e.g. ["0.0.0.0:990"]
public_host = ""                  # IPv4 announced in PASV replies; empty = control connection's local address
max_clients = 2000
max_clients_per_ip = 20
idle_timeout = "5m"
data_timeout = "30s"              # how long a data connection may take to arrive

[tls]
cert_file = ""                    # both empty: self-signed ECDSA P-256 kept in state_dir
key_file = ""
min_version = "1.2"
require = true                    # TLS required for login and for data connections

[passive]
ports = "50000-50999"

[firewall]
mode = "nftables"                 # "nftables" or "off"
table = "ftpsd"
pinhole_timeout = "30s"

[storage]
state_dir = "/var/lib/ftpsd"

[[user]]
name = "alice"
password_hash = "{hash}"      # from `+"`ftpsd passwd`"+`
root = "{root}"
read_only = false
`)
	got := mustLoad(t, path)
	want := fileDefaults()
	want.Server.ImplicitListen = []string{}
	want.Users = []User{{Name: "alice", PasswordHash: testHash(), Root: f.root, Umask: 0o022, RequireSessionReuse: true}}
	want.Source = path
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
	}
}

func TestMinimalGetsDefaults(t *testing.T) {
	f := newFixture(t)
	path := f.write("ftpsd.toml", oneUser)
	got := mustLoad(t, path)
	want := &Config{
		Server: Server{
			Listen:          []string{"0.0.0.0:21"},
			MaxClients:      2000,
			MaxClientsPerIP: 20,
			IdleTimeout:     5 * time.Minute,
			DataTimeout:     30 * time.Second,
			Umask:           0o022,
		},
		TLS:      TLS{MinVersion: tls.VersionTLS12, Require: true, RequireSessionReuse: true},
		Passive:  Passive{PortMin: 50000, PortMax: 50999},
		Firewall: Firewall{Mode: "nftables", Table: "ftpsd", PinholeTimeout: 30 * time.Second},
		Storage:  Storage{StateDir: "/var/lib/ftpsd"},
		Log:      Log{Format: "text"},
		Ban:      Ban{MaxFailures: 5, Window: 10 * time.Minute, Duration: time.Hour, Allow: []netip.Prefix{}, IPv6Prefix: 64},
		Users:    []User{{Name: "alice", PasswordHash: testHash(), Root: f.root, Umask: 0o022, RequireSessionReuse: true}},
		Source:   path,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
	}
}

func TestValidVariants(t *testing.T) {
	cases := []struct {
		name  string
		toml  string
		check func(*testing.T, *Config)
	}{
		{"implicit only", "[server]\nlisten = []\nimplicit_listen = [\"[::]:990\"]\n" + oneUser, func(t *testing.T, c *Config) {
			if len(c.Server.Listen) != 0 || c.Server.ImplicitListen[0] != "[::]:990" {
				t.Errorf("listeners %v / %v", c.Server.Listen, c.Server.ImplicitListen)
			}
		}},
		{"same port, different hosts", "[server]\nlisten = [\"127.0.0.1:2121\", \"127.0.0.2:2121\", \"[::1]:2121\"]\n" + oneUser, nil},
		{"same host, different ports", "[server]\nlisten = [\"[::]:21\"]\nimplicit_listen = [\"[::]:990\"]\n" + oneUser, nil},
		{"single passive port", "[passive]\nports = \"50000\"\n" + oneUser, func(t *testing.T, c *Config) {
			if c.Passive != (Passive{PortMin: 50000, PortMax: 50000}) {
				t.Errorf("passive %+v", c.Passive)
			}
		}},
		{"passive range edges", "[passive]\nports = \"1024-65535\"\n[server]\nlisten = [\"0.0.0.0:21\"]\n" + oneUser, func(t *testing.T, c *Config) {
			if c.Passive != (Passive{PortMin: 1024, PortMax: 65535}) {
				t.Errorf("passive %+v", c.Passive)
			}
		}},
		{"small max_clients lowers per-IP default", "[server]\nmax_clients = 5\n" + oneUser, func(t *testing.T, c *Config) {
			if c.Server.MaxClientsPerIP != 5 {
				t.Errorf("max_clients_per_ip = %d, want 5", c.Server.MaxClientsPerIP)
			}
		}},
		{"$2b$ and $2y$ hashes", "[[user]]\nname = \"a\"\npassword_hash = \"$2b$" + testHash()[4:] + "\"\nroot = \"{root}\"\n" +
			"[[user]]\nname = \"b\"\npassword_hash = \"$2y$" + testHash()[4:] + "\"\nroot = \"{root}\"\n", nil},
		{"users as inline array", "user = [{ name = \"a\", password_hash = \"{hash}\", root = \"{root}\" }]\n", nil},
		{"public_host IPv4", "[server]\npublic_host = \"192.0.2.10\"\n" + oneUser, nil},
		{"proxy_protocol empty is off", "[server]\nproxy_protocol = []\n" + oneUser, func(t *testing.T, c *Config) {
			if len(c.Server.ProxyProtocol) != 0 {
				t.Errorf("proxy_protocol %v", c.Server.ProxyProtocol)
			}
		}},
		{"proxy_protocol wide, both families", "[server]\nproxy_protocol = [\"10.0.0.0/8\", \"fd00::/8\", \"fd00::5\"]\n" + oneUser, func(t *testing.T, c *Config) {
			want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("fd00::5/128")}
			if !reflect.DeepEqual(c.Server.ProxyProtocol, want) {
				t.Errorf("proxy_protocol %v, want %v", c.Server.ProxyProtocol, want)
			}
		}},
		{"session reuse off for all, on for one", "[tls]\nrequire_session_reuse = false\n" + oneUser +
			"\n[[user]]\nname = \"b\"\npassword_hash = \"{hash}\"\nroot = \"{root}\"\nrequire_session_reuse = true\n", func(t *testing.T, c *Config) {
			if c.TLS.RequireSessionReuse || c.Users[0].RequireSessionReuse || !c.Users[1].RequireSessionReuse {
				t.Errorf("tls %v, users %v / %v", c.TLS.RequireSessionReuse, c.Users[0].RequireSessionReuse, c.Users[1].RequireSessionReuse)
			}
		}},
		{"max_per_ip up to the range", "[passive]\nports = \"50000-50009\"\nmax_per_ip = 10\n" + oneUser, func(t *testing.T, c *Config) {
			if c.Passive.MaxPerIP != 10 {
				t.Errorf("max_per_ip %d", c.Passive.MaxPerIP)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			cfg := mustLoad(t, f.write("ftpsd.toml", tc.toml))
			if tc.check != nil {
				tc.check(t, cfg)
			}
		})
	}
}

func TestRelativePathsFollowConfigFile(t *testing.T) {
	f := newFixture(t)
	for _, d := range []string{"etc/ftp/alice", "srv/bob"} {
		if err := os.MkdirAll(filepath.Join(f.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f.write("etc/ftp/ftpsd.toml", `[storage]
state_dir = "state"

[[user]]
name = "alice"
password_hash = "{hash}"
root = "alice"

[[user]]
name = "bob"
password_hash = "{hash}"
root = "../../srv/bob"
`)
	// Loaded by a relative name from elsewhere: paths still follow the file.
	t.Chdir(filepath.Join(f.dir, "srv"))
	cfg := mustLoad(t, "../etc/ftp/ftpsd.toml")
	if want := filepath.Join(f.dir, "etc/ftp/alice"); cfg.Users[0].Root != want {
		t.Errorf("alice root = %s, want %s", cfg.Users[0].Root, want)
	}
	if want := filepath.Join(f.dir, "srv/bob"); cfg.Users[1].Root != want {
		t.Errorf("bob root = %s, want %s", cfg.Users[1].Root, want)
	}
	if want := filepath.Join(f.dir, "etc/ftp/state"); cfg.Storage.StateDir != want {
		t.Errorf("state_dir = %s, want %s", cfg.Storage.StateDir, want)
	}
	if cfg.Source != "../etc/ftp/ftpsd.toml" {
		t.Errorf("Source = %q", cfg.Source)
	}
}

func TestDefault(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	cfg, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "ftpsd-data")
	want := fileDefaults()
	want.Server.Listen = []string{":2121"}
	want.Passive = Passive{PortMin: 50000, PortMax: 50099}
	want.Storage.StateDir = state
	want.Users = []User{{Name: "ftp", Root: filepath.Join(state, "files"), Umask: 0o022, RequireSessionReuse: true}}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got\n%+v\nwant\n%+v", cfg, want)
	}
	if cfg.Firewall.Mode != "nftables" || cfg.Firewall.Table != "ftpsd" || cfg.Source != "" {
		t.Errorf("firewall %+v source %q", cfg.Firewall, cfg.Source)
	}
}

func TestResolve(t *testing.T) {
	t.Run("explicit path", func(t *testing.T) {
		f := newFixture(t)
		path := f.write("other.toml", oneUser)
		t.Chdir(f.dir)
		f.write("ftpsd.toml", "this is not toml")
		if cfg := mustResolve(t, path); cfg.Source != path {
			t.Errorf("Source = %q, want %q", cfg.Source, path)
		}
	})
	t.Run("./ftpsd.toml", func(t *testing.T) {
		f := newFixture(t)
		f.write("ftpsd.toml", oneUser)
		t.Chdir(f.dir)
		if cfg := mustResolve(t, ""); cfg.Source != "ftpsd.toml" || cfg.Users[0].Name != "alice" {
			t.Errorf("Source = %q, users %+v", cfg.Source, cfg.Users)
		}
	})
	t.Run("./ftpsd.toml invalid is not skipped", func(t *testing.T) {
		f := newFixture(t)
		f.write("ftpsd.toml", "[server]\nmax_clients = 0\n"+oneUser)
		t.Chdir(f.dir)
		_, err := Resolve("")
		var es Errors
		if !errors.As(err, &es) || es[0].File != "ftpsd.toml" || es[0].Line != 2 {
			t.Errorf("Resolve: %v", err)
		}
	})
	t.Run("default", func(t *testing.T) {
		dir := t.TempDir()
		t.Chdir(dir)
		cfg := mustResolve(t, "")
		if cfg.Source != "" || cfg.Users[0].Name != "ftp" || cfg.Storage.StateDir != filepath.Join(dir, "ftpsd-data") {
			t.Errorf("got %+v", cfg)
		}
	})
	t.Run("missing explicit file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope.toml")
		_, err := Resolve(path)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("err = %v, want fs.ErrNotExist", err)
		}
		if want := path + ": cannot read: no such file or directory"; err.Error() != want {
			t.Errorf("err = %q, want %q", err, want)
		}
	})
}

func mustResolve(t *testing.T, path string) *Config {
	t.Helper()
	cfg, err := Resolve(path)
	if err != nil {
		t.Fatalf("Resolve(%q): %v", path, err)
	}
	return cfg
}

func TestParseName(t *testing.T) {
	_, err := Parse([]byte("[server]\nidle_timeout = \"x\"\n"), "inline.toml")
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("err = %v", err)
	}
	if got := es[0].Error(); got != `inline.toml:2: server.idle_timeout: invalid duration "x": use Go syntax such as "30s", "5m" or "1h30m"` {
		t.Errorf("Error() = %q", got)
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{File: "f.toml", Line: 3, Key: "server.listen", Msg: "bad"}, "f.toml:3: server.listen: bad"},
		{Error{File: "f.toml", Key: "user", Msg: "none"}, "f.toml: user: none"},
		{Error{File: "f.toml", Line: 1, Msg: "syntax"}, "f.toml:1: syntax"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
	es := Errors{{File: "a", Line: 1, Key: "k", Msg: "m"}, {File: "a", Key: "user", Msg: "n"}}
	if got, want := es.Error(), "a:1: k: m\na: user: n"; got != want {
		t.Errorf("Errors.Error() = %q, want %q", got, want)
	}
}

// Every key in schema must be one a reader accepts: given a value of the
// wrong type, it must be reported as mistyped, not as unknown.
func TestSchemaMatchesReaders(t *testing.T) {
	for sec, keys := range schema {
		for _, k := range keys {
			f := newFixture(t)
			header := "[" + sec + "]"
			if sec == "user" {
				header = "[[user]]"
			}
			es := loadErrors(t, f.write("ftpsd.toml", oneUser+"\n"+header+"\n"+k+" = { x = 1 }\n"))
			for _, e := range es {
				if strings.Contains(e.Msg, "unknown key") {
					t.Errorf("%s.%s: %v", sec, k, e)
				}
			}
			if !strings.Contains(es.Error(), "not a table") {
				t.Errorf("%s.%s: no type error in\n%v", sec, k, es)
			}
		}
	}
}

func TestStorageFsync(t *testing.T) {
	for _, c := range []struct {
		line string
		skip bool
	}{{"", false}, {`fsync = "always"`, false}, {`fsync = "never"`, true}} {
		f := newFixture(t)
		cfg := mustLoad(t, f.write("ftpsd.toml", oneUser+"\n[storage]\n"+c.line+"\n"))
		if cfg.Storage.SkipFsync != c.skip {
			t.Errorf("%q: SkipFsync = %v, want %v", c.line, cfg.Storage.SkipFsync, c.skip)
		}
	}
}
