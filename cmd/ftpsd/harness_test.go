package main

// End-to-end harness: every test runs the real ftpsd binary inside a network
// namespace it creates, and drives it with real clients run in that namespace.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ftpsd/ftpsd/internal/ftpclient"
	"github.com/ftpsd/ftpsd/internal/testns"
)

var ftpsdBin string

func TestMain(m *testing.M) {
	testns.CleanupStale()
	dir, err := os.MkdirTemp("", "ftpsd-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ftpsdBin = filepath.Join(dir, "ftpsd")
	// Without cgo, as README's install builds it: only then can run_as
	// change capabilities on all threads.
	build := exec.Command("go", "build", "-o", ftpsdBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build ftpsd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Test users: name -> password. Hashes use bcrypt's minimum cost to keep tests fast.
var testUsers = map[string]string{"alice": "alice-secret", "reader": "reader-secret"}

var hashOnce = sync.OnceValue(func() map[string]string {
	out := map[string]string{}
	for u, p := range testUsers {
		h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
		if err != nil {
			panic(err)
		}
		out[u] = string(h)
	}
	return out
})

// Addresses inside each test namespace, all on its loopback device.
const (
	srvIP4  = "127.0.0.1"
	cliA4   = "127.0.0.2" // the legitimate client
	cliB4   = "127.0.0.3" // a second source address (the attacker)
	srvIP6  = "fd00::1"
	cliA6   = "fd00::2"
	cliB6   = "fd00::3"
	ctlPort = 2121
	impPort = 990
)

// serverOpts shape the config a test runs with.
type serverOpts struct {
	firewall       string   // "nftables" (default) or "off"
	ports          string   // default 50000-50099
	pinholeTimeout string   // default 5s
	dataTimeout    string   // default 5s
	idleTimeout    string   // default 1m
	perIP          int      // default 20
	maxClients     int      // default 2000
	require        *bool    // default true
	mark           string   // [firewall] mark, default none
	extra          string   // appended TOML
	prefix         []string // command line ftpsd's own is appended to (e.g. unshare ...)

	// For several servers in one namespace (a cluster behind a balancer):
	host        string            // control listeners' address, default all ("[::]")
	table       string            // [firewall] table, default "ftpsd"
	publicHost  string            // [server] public_host, default none
	serverExtra string            // TOML lines added to [server]
	roots       map[string]string // users' roots (any string config accepts); default a folder per user in the server's dir
}

type ftpsd struct {
	t       *testing.T
	ns      *testns.NS
	dir     string
	cfgPath string
	cmd     *exec.Cmd
	log     *syncBuffer
	stdout  *syncBuffer
	done    chan struct{}
	ctl     int    // control port start waits for; default ctlPort
	host    string // control address start waits on; default srvIP4
	prefix  []string
	env     []string // added to ftpsd's environment
	wrap    []string // a command ftpsd is started through (e.g. setpriv)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newNS makes a namespace with the test's extra addresses.
func newNS(t *testing.T) *testns.NS {
	t.Helper()
	ns := testns.New(t)
	for _, a := range []string{srvIP6, cliA6, cliB6} {
		ns.Run(t, "ip", "-6", "addr", "add", a+"/128", "dev", "lo", "nodad")
	}
	return ns
}

func writeConfig(t *testing.T, dir string, o serverOpts) string {
	t.Helper()
	def := func(v, d string) string {
		if v == "" {
			return d
		}
		return v
	}
	require := true
	if o.require != nil {
		require = *o.require
	}
	perIP := o.perIP
	if perIP == 0 {
		perIP = 20
	}
	maxClients := o.maxClients
	if maxClients == 0 {
		maxClients = 2000
	}
	hashes := hashOnce()
	host := def(o.host, "[::]")
	var b strings.Builder
	fmt.Fprintf(&b, `[server]
listen = ["%s:%d"]
implicit_listen = ["%s:%d"]
public_host = %q
max_clients = %d
max_clients_per_ip = %d
idle_timeout = %q
data_timeout = %q
%s
[tls]
require = %v

[passive]
ports = %q

[firewall]
mode = %q
table = %q
pinhole_timeout = %q
mark = %q

[storage]
state_dir = %q
`, host, ctlPort, host, impPort, o.publicHost, maxClients, perIP, def(o.idleTimeout, "1m"), def(o.dataTimeout, "5s"),
		o.serverExtra, require, def(o.ports, "50000-50099"), def(o.firewall, "nftables"), def(o.table, "ftpsd"),
		def(o.pinholeTimeout, "5s"), o.mark, filepath.Join(dir, "state"))
	for _, u := range []string{"alice", "reader"} {
		root, given := o.roots[u]
		if !given {
			root = filepath.Join(dir, u)
			if err := os.MkdirAll(root, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		fmt.Fprintf(&b, "\n[[user]]\nname = %q\npassword_hash = %q\nroot = %q\nread_only = %v\n",
			u, hashes[u], root, u == "reader")
	}
	b.WriteString(o.extra)
	path := filepath.Join(dir, "ftpsd.toml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startFTPSD runs ftpsd in ns with a config made from o and waits until it accepts.
func startFTPSD(t *testing.T, ns *testns.NS, o serverOpts) *ftpsd {
	t.Helper()
	dir := t.TempDir()
	s := &ftpsd{t: t, ns: ns, dir: dir, cfgPath: writeConfig(t, dir, o), prefix: o.prefix, host: o.host}
	s.start()
	return s
}

func (s *ftpsd) start(args ...string) {
	t := s.t
	t.Helper()
	if len(args) == 0 {
		args = []string{"serve", "-c", s.cfgPath}
	}
	s.log, s.stdout = &syncBuffer{}, &syncBuffer{}
	argv := append(append(append(append([]string{}, s.prefix...), s.wrap...), ftpsdBin), args...)
	s.cmd = s.ns.Command(argv[0], argv[1:]...)
	if s.env != nil {
		s.cmd.Env = append(os.Environ(), s.env...)
	}
	s.cmd.Dir = s.dir
	s.cmd.Stdout, s.cmd.Stderr = s.stdout, s.log
	port := s.ctl
	if port == 0 {
		port = ctlPort
	}
	host := srvIP4
	if s.host != "" && s.host != "[::]" {
		host = s.host
	}
	s.done = runDaemon(t, "ftpsd", s.cmd, s.log, 15*time.Second, func() error {
		c, err := s.dial(srvIP4, 200*time.Millisecond)("tcp", net.JoinHostPort(host, fmt.Sprint(port)))
		if err == nil {
			c.Close()
		}
		return err
	})
}

// runDaemon starts cmd, a server inside a test namespace, and waits until
// ready returns nil (polled every 50 ms), failing the test if the process
// exits first or within passes. The process is killed when the test ends,
// and log (its output) is shown if the test failed. The channel is closed
// once the process has exited.
func runDaemon(t *testing.T, name string, cmd *exec.Cmd, log *syncBuffer, within time.Duration, ready func() error) chan struct{} {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("%s log:\n%s", name, log.String())
		}
	})
	deadline := time.Now().Add(within)
	for {
		select {
		case <-done:
			t.Fatalf("%s exited at start: %v\n%s", name, cmd.ProcessState, log.String())
		default:
		}
		err := ready()
		if err == nil {
			return done
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within %v: %v\n%s", name, within, err, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (s *ftpsd) stop() {
	s.t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(40 * time.Second):
		s.t.Fatal("ftpsd did not stop within 40s of SIGTERM")
	}
}

// dial returns a dialer bound to source address src inside the namespace.
func (s *ftpsd) dial(src string, timeout time.Duration) ftpclient.DialFunc {
	return func(network, addr string) (net.Conn, error) {
		var c net.Conn
		err := s.ns.Do(func() error {
			d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
			var err error
			c, err = d.Dial(network, addr)
			return err
		})
		return c, err
	}
}

var clientTLS = &tls.Config{InsecureSkipVerify: true, ClientSessionCache: tls.NewLRUClientSessionCache(64)}

// client logs in as user over explicit FTPS from source src to server address dst.
func (s *ftpsd) client(src, dst, user string) *ftpclient.Client {
	s.t.Helper()
	c, _, err := ftpclient.Dial(s.dial(src, 2*time.Second), net.JoinHostPort(dst, fmt.Sprint(ctlPort)), clientTLS, false)
	if err != nil {
		s.t.Fatalf("dial control: %v", err)
	}
	s.t.Cleanup(func() { c.Close() })
	if err := c.AuthTLS(); err != nil {
		s.t.Fatal(err)
	}
	if err := c.Login(user, testUsers[user]); err != nil {
		s.t.Fatal(err)
	}
	return c
}

// run runs a client program inside the namespace and returns its combined output.
func (s *ftpsd) run(timeout time.Duration, name string, args ...string) (string, error) {
	cmd := s.ns.Command(name, args...)
	cmd.Dir = s.dir
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		return out.String(), fmt.Errorf("%s timed out after %v", name, timeout)
	}
}

func (s *ftpsd) mustRun(timeout time.Duration, name string, args ...string) string {
	s.t.Helper()
	out, err := s.run(timeout, name, args...)
	if err != nil {
		s.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// root is a user's directory on disk.
func (s *ftpsd) root(user string) string { return filepath.Join(s.dir, user) }

// waitLog waits until the log contains substr.
func (s *ftpsd) waitLog(substr string, within time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(s.log.String(), substr) {
		if time.Now().After(deadline) {
			s.t.Fatalf("log never showed %q", substr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// status runs `ftpsd firewall status` in the namespace.
func (s *ftpsd) status() string {
	s.t.Helper()
	return s.mustRun(10*time.Second, ftpsdBin, "firewall", "status", "-c", s.cfgPath)
}

// countLines counts lines of the log with all the given substrings.
func countLines(log string, subs ...string) int {
	n := 0
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
next:
	for sc.Scan() {
		for _, s := range subs {
			if !strings.Contains(sc.Text(), s) {
				continue next
			}
		}
		n++
	}
	return n
}

// randomFile writes n pseudo-random bytes.
func randomFile(t *testing.T, path string, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	// Cheap but not periodic: mix in a counter-based pattern.
	for i := 0; i+8 <= n; i += 4096 {
		copy(b[i:], fmt.Sprintf("%08x", i))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}
