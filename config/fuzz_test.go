package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse decodes arbitrary config text: no input may panic, and
// whatever is accepted must hold the invariants the rest of ftpsd relies on.
func FuzzParse(f *testing.F) {
	f.Add([]byte(oneUser))
	f.Add([]byte("[server]\nmax_clients = 3\n[passive]\nports = \"50000-50009\"\nmax_per_ip = 2\n[ban]\nallow = [\"10.0.0.0/8\"]\nipv6_prefix = 48\n" + oneUser))
	f.Add([]byte("[tls]\nrequire_session_reuse = false\n" + oneUser + "require_session_reuse = true\n"))
	f.Add([]byte("[[user]]\nname = 1\n[[user]]\n"))
	f.Add([]byte("[server]\nlisten = [\"[::]:21\", \"0.0.0.0:21\"]\n"))
	dir := f.TempDir()
	root := filepath.Join(dir, "files")
	if err := os.Mkdir(root, 0o755); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Placeholders let seeds name a real hash and root.
		text := string(data)
		text = replacePlaceholders(text, root)
		cfg, err := Parse([]byte(text), filepath.Join(dir, "fuzz.toml"))
		if err != nil {
			if es, ok := err.(Errors); !ok || len(es) == 0 {
				t.Fatalf("error of type %T with no problems: %v", err, err)
			}
			return
		}
		s := cfg.Server
		switch {
		case len(cfg.Users) == 0:
			t.Fatal("accepted without users")
		case s.MaxClients < 1 || s.MaxClientsPerIP < 1 || s.MaxClientsPerIP > s.MaxClients:
			t.Fatalf("client limits %d / %d", s.MaxClients, s.MaxClientsPerIP)
		case cfg.Passive.PortMin < 1024 || cfg.Passive.PortMax < cfg.Passive.PortMin:
			t.Fatalf("passive range %d-%d", cfg.Passive.PortMin, cfg.Passive.PortMax)
		case cfg.Passive.MaxPerIP < 0 || cfg.Passive.MaxPerIP > int(cfg.Passive.PortMax-cfg.Passive.PortMin)+1:
			t.Fatalf("max_per_ip %d", cfg.Passive.MaxPerIP)
		case s.IdleTimeout <= 0 || s.DataTimeout <= 0 || cfg.Firewall.PinholeTimeout <= 0:
			t.Fatal("non-positive timeout accepted")
		case cfg.Ban.MaxFailures < 1 || cfg.Ban.Window <= 0 || cfg.Ban.Duration <= 0 || cfg.Ban.IPv6Prefix < 1 || cfg.Ban.IPv6Prefix > 128:
			t.Fatalf("ban %+v", cfg.Ban)
		case len(s.Listen)+len(s.ImplicitListen) == 0:
			t.Fatal("no listener accepted")
		}
		for _, p := range cfg.Ban.Allow {
			if p != p.Masked() || !p.IsValid() {
				t.Fatalf("allow %s not masked", p)
			}
		}
		for _, u := range cfg.Users {
			if u.Name == "" || !filepath.IsAbs(u.Root) || checkHash(u.PasswordHash) != "" {
				t.Fatalf("user %+v", u)
			}
		}
	})
}

func replacePlaceholders(s, root string) string {
	out := []byte{}
	for i := 0; i < len(s); i++ {
		switch {
		case hasAt(s, i, "{hash}"):
			out = append(out, testHash()...)
			i += len("{hash}") - 1
		case hasAt(s, i, "{root}"):
			out = append(out, root...)
			i += len("{root}") - 1
		default:
			out = append(out, s[i])
		}
	}
	return string(out)
}

func hasAt(s string, i int, sub string) bool { return len(s)-i >= len(sub) && s[i:i+len(sub)] == sub }

// FuzzParsePrefix: what ParsePrefix accepts is masked and contains the
// address it was given.
func FuzzParsePrefix(f *testing.F) {
	for _, s := range []string{"192.0.2.7", "192.0.2.7/24", "2001:db8::1/64", "::ffff:192.0.2.1/120", "::ffff:1.2.3.4", "fe80::1%eth0", "", "/", "1.2.3.4/33"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePrefix(s)
		if err != nil {
			return
		}
		if !p.IsValid() || p != p.Masked() {
			t.Fatalf("%q -> %s: not a masked prefix", s, p)
		}
		if p.Addr().Is4In6() {
			t.Fatalf("%q -> %s: mapped address kept", s, p)
		}
		addr := s
		for i := 0; i < len(s); i++ {
			if s[i] == '/' {
				addr = s[:i]
				break
			}
		}
		if a, err := netip.ParseAddr(addr); err == nil && !p.Contains(a.Unmap().WithZone("")) {
			t.Fatalf("%q -> %s does not contain %s", s, p, a)
		}
	})
}
