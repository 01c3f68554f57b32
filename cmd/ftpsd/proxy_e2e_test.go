package main

// Behind a load balancer: HAProxy (send-proxy-v2) in front of two ftpsd
// nodes, all in one test namespace. Control connections go through
// HAProxy; passive data connections go straight to the node that answered,
// whose PASV names its own public_host and whose pinhole is keyed on the
// real client address from the PROXY header.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	proxyproto "github.com/pires/go-proxyproto"

	"github.com/ftpsd/ftpsd/internal/ftpclient"
	"github.com/ftpsd/ftpsd/internal/s3test"
	"github.com/ftpsd/ftpsd/internal/testns"
)

// Cluster addresses, added to the test namespace's loopback device. They
// are private, not loopback, addresses: lftp replaces a PASV address in
// 127/8 other than 127.0.0.1 with the control connection's (it takes it for
// a reserved one), which would hide where data connections really go.
const (
	lbIP      = "10.0.0.1" // HAProxy's frontends: what clients connect to
	lbSrcIP   = "10.0.0.5" // HAProxy's source towards the nodes: what proxy_protocol trusts
	cluA      = "10.0.0.2" // the legitimate client
	cluB      = "10.0.0.3" // the attacker
	cluC      = "10.0.0.4" // a client banned in the ban test
	lbCtlPort = 3121       // not the nodes' ports: their ban rules match control ports on any address
	lbImpPort = 3990
)

// nodeIPs are the nodes' own addresses (listeners and public_host).
var nodeIPs = []string{"10.0.0.10", "10.0.0.11"}

// clusterOpts shape a cluster.
type clusterOpts struct {
	// roots are the users' roots every node shares (such as one
	// s3://bucket/prefix).
	roots map[string]string
	// node adjusts node i's options (0-based) before it starts: append
	// tables to o.extra (it already holds the node's [log] xferlog), keys
	// to o.serverExtra.
	node func(i int, o *serverOpts)
}

// cluster is HAProxy in front of ftpsd nodes.
type cluster struct {
	t        *testing.T
	ns       *testns.NS
	nodes    []*ftpsd
	lb       string // HAProxy's explicit FTPS frontend, host:port
	lbImp    string // its implicit FTPS frontend
	roots    map[string]string
	haLog    *syncBuffer
	xferlogs []string // each node's xferlog
}

// startCluster starts len(nodeIPs) ftpsd nodes (each its own address,
// nftables table, passive range and public_host, all sharing the users'
// roots and trusting HAProxy's source address) and HAProxy in front of them.
func startCluster(t *testing.T, ns *testns.NS, co clusterOpts) *cluster {
	t.Helper()
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Fatalf("haproxy is required (apt-get install -y haproxy): %v", err)
	}
	if co.roots == nil {
		t.Fatal("startCluster: the nodes need shared roots")
	}
	c := &cluster{t: t, ns: ns, lb: net.JoinHostPort(lbIP, strconv.Itoa(lbCtlPort)),
		lbImp: net.JoinHostPort(lbIP, strconv.Itoa(lbImpPort)), roots: co.roots}
	for _, a := range append([]string{lbIP, lbSrcIP, cluA, cluB, cluC}, nodeIPs...) {
		ns.Run(t, "ip", "addr", "add", a+"/32", "dev", "lo")
	}
	logs := t.TempDir()
	for i, ip := range nodeIPs {
		xfer := filepath.Join(logs, fmt.Sprintf("xferlog%d", i+1))
		o := serverOpts{
			host:           ip,
			publicHost:     ip,
			table:          fmt.Sprintf("ftpsd_node%d", i+1),
			ports:          fmt.Sprintf("%d-%d", 50000+100*i, 50049+100*i),
			serverExtra:    fmt.Sprintf("proxy_protocol = [%q]\n", lbSrcIP+"/32"),
			roots:          c.roots,
			dataTimeout:    "20s",
			pinholeTimeout: "20s",
			extra:          fmt.Sprintf("\n[log]\nxferlog = %q\n", xfer),
		}
		if co.node != nil {
			co.node(i, &o)
		}
		c.nodes = append(c.nodes, startFTPSD(t, ns, o))
		c.xferlogs = append(c.xferlogs, xfer)
	}
	c.startHAProxy()
	return c
}

func (c *cluster) startHAProxy() {
	t := c.t
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, `global
    maxconn 1000
    log stdout format raw local0

defaults
    mode tcp
    log global
    option log-health-checks
    timeout connect 5s
    timeout client 2m
    timeout server 2m

frontend explicit
    bind %s
    default_backend explicit_nodes

frontend implicit
    bind %s
    default_backend implicit_nodes
`, c.lb, c.lbImp)
	for _, be := range []struct {
		name string
		port int
	}{{"explicit_nodes", ctlPort}, {"implicit_nodes", impPort}} {
		fmt.Fprintf(&b, "\nbackend %s\n    balance roundrobin\n", be.name)
		for i, ip := range nodeIPs {
			// Health checks carry a LOCAL header (send-proxy-v2).
			fmt.Fprintf(&b, "    server node%d %s:%d send-proxy-v2 source %s check inter 1s\n", i+1, ip, be.port, lbSrcIP)
		}
	}
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	c.haLog = &syncBuffer{}
	haproxy := c.ns.Command("haproxy", "-db", "-f", cfg)
	haproxy.Stdout, haproxy.Stderr = c.haLog, c.haLog
	// Ready once both frontends are bound (checked with ss, so that no
	// connection reaches a node before the tests count what the nodes log).
	runDaemon(t, "haproxy", haproxy, c.haLog, 20*time.Second, func() error {
		out, _ := c.ns.Command("ss", "-Hltn").CombinedOutput()
		if strings.Contains(string(out), c.lb) && strings.Contains(string(out), c.lbImp) {
			return nil
		}
		return fmt.Errorf("frontends %s and %s not listening:\n%s", c.lb, c.lbImp, out)
	})
}

// client logs in as user through the balancer from source src, over
// explicit FTPS, with PASV for transfers.
func (c *cluster) client(src, user string) *ftpclient.Client {
	c.t.Helper()
	cl, rep, err := ftpclient.Dial(c.nodes[0].dial(src, 5*time.Second), c.lb, clientTLS, false)
	if err != nil {
		c.t.Fatalf("dial %s from %s: %v (%v)", c.lb, src, err, rep)
	}
	c.t.Cleanup(func() { cl.Close() })
	cl.UsePASV = true
	if err := cl.AuthTLS(); err != nil {
		c.t.Fatal(err)
	}
	if err := cl.Login(user, testUsers[user]); err != nil {
		c.t.Fatal(err)
	}
	return cl
}

// node returns the node whose address is ip.
func (c *cluster) node(ip string) *ftpsd {
	c.t.Helper()
	for i, n := range nodeIPs {
		if n == ip {
			return c.nodes[i]
		}
	}
	c.t.Fatalf("%s is no node's address (PASV named it)", ip)
	return nil
}

// logs is all nodes' logs together.
func (c *cluster) logs() string {
	var b strings.Builder
	for _, n := range c.nodes {
		b.WriteString(n.log.String())
	}
	return b.String()
}

// run runs a client program in the namespace, from the shared folder.
func (c *cluster) run(timeout time.Duration, name string, args ...string) string {
	c.t.Helper()
	return c.nodes[0].mustRun(timeout, name, args...)
}

var pasvRE = regexp.MustCompile(`227 [^(]*\((\d+),(\d+),(\d+),(\d+),\d+,\d+\)`)

// clusterPrefix is where the cluster's users live in the test bucket.
const clusterPrefix = "cluster/"

// testBehindHAProxy runs two nodes on the bucket srv holds, behind HAProxy
// (TestS3AndBalancer).
func testBehindHAProxy(t *testing.T, ns *testns.NS, srv *s3test.Server, s3conf string) {
	root := "s3://" + e2eBucket + "/" + strings.TrimSuffix(clusterPrefix, "/")
	c := startCluster(t, ns, clusterOpts{
		roots: map[string]string{"alice": root, "reader": root},
		node:  func(_ int, o *serverOpts) { o.extra += s3conf },
	})
	work := c.nodes[0].dir // client programs run here
	// stored is what the bucket holds under the users' root.
	stored := func(t *testing.T, name string) []byte {
		t.Helper()
		b, err := object(t, srv, clusterPrefix+name)
		if err != nil {
			t.Fatalf("%s in the bucket: %v", name, err)
		}
		return b
	}

	t.Run("curl", func(t *testing.T) {
		src := randomFile(t, filepath.Join(work, "curl-up.bin"), 2<<20)
		base := fmt.Sprintf("ftp://%s/", c.lb)
		// curl ignores PASV's address by default (--ftp-skip-pasv-ip, since
		// 7.74): behind a balancer it must use it.
		curl := func(args ...string) string {
			return c.run(60*time.Second, "curl", append(curlArgs(nil, "alice", "--verbose", "--no-ftp-skip-pasv-ip",
				"--interface", cluA), args...)...)
		}
		out := curl("-T", "curl-up.bin", base+"viacurl/up.bin", "--ftp-create-dirs")
		checkFallback(t, "curl upload", out, "> EPSV", "< 502", "> PASV")
		if sum(stored(t, "viacurl/up.bin")) != sum(src) {
			t.Fatal("curl upload through the balancer differs in the bucket")
		}
		for i := range 3 {
			name := fmt.Sprintf("curl-down%d.bin", i)
			out = curl("-o", name, base+"viacurl/up.bin")
			checkFallback(t, "curl download", out, "> EPSV", "< 502", "> PASV")
			if back, _ := os.ReadFile(filepath.Join(work, name)); sum(back) != sum(src) {
				t.Fatalf("curl download %d differs", i)
			}
		}
		// Implicit FTPS through the balancer's second frontend.
		out = c.run(60*time.Second, "curl", curlArgs(nil, "alice", "--verbose", "--no-ftp-skip-pasv-ip", "--interface", cluA,
			"-o", "curl-implicit.bin", fmt.Sprintf("ftps://%s/viacurl/up.bin", c.lbImp))...)
		checkFallback(t, "curl implicit download", out, "> EPSV", "< 502", "> PASV")
		if back, _ := os.ReadFile(filepath.Join(work, "curl-implicit.bin")); sum(back) != sum(src) {
			t.Fatal("implicit FTPS download through the balancer differs")
		}
		// Round robin: both nodes served some of the five sessions.
		for i, n := range c.nodes {
			if countLines(n.log.String(), "session start", "client="+cluA+":", "via="+lbSrcIP+":") == 0 {
				t.Errorf("node %d served none of curl's sessions", i+1)
			}
		}
	})

	t.Run("lftp", func(t *testing.T) {
		tree := filepath.Join(work, "lftp-tree")
		randomFile(t, filepath.Join(tree, "a.bin"), 300_000)
		randomFile(t, filepath.Join(tree, "sub", "b.bin"), 1_200_000)
		// lftp (4.9.2) sends EPSV over IPv4 only with prefer-epsv; it then
		// takes FEAT's MLST as a sign of EPSV support. On a 500 or 502 it
		// reconnects and uses PASV (any other 5xx would make it switch to
		// active mode, which ftpsd refuses).
		script := fmt.Sprintf(lftpSettings+`set net:socket-bind-ipv4 %s
set ftp:prefer-epsv yes
open -u alice,%s ftp://%s
mirror -R lftp-tree /vialftp
mirror /vialftp lftp-back
quit
`, cluA, testUsers["alice"], c.lb)
		os.WriteFile(filepath.Join(work, "proxy.lftp"), []byte(script), 0o600)
		out := c.run(120*time.Second, "lftp", "-d", "-f", "proxy.lftp")
		checkFallback(t, "lftp", out, "---> EPSV", "<--- 502", "---> PASV")
		if diff, err := exec.Command("diff", "-r", tree, filepath.Join(work, "lftp-back")).CombinedOutput(); err != nil {
			t.Fatalf("lftp mirror up and down through the balancer differs:\n%s", diff)
		}
		for _, f := range []string{"a.bin", "sub/b.bin"} {
			if sum(stored(t, "vialftp/"+f)) != sum(mustRead(t, filepath.Join(tree, f))) {
				t.Fatalf("lftp upload of %s differs in the bucket", f)
			}
		}
		// lftp with its defaults uses PASV over IPv4 from the start.
		os.WriteFile(filepath.Join(work, "plain.lftp"), []byte(fmt.Sprintf(`set ftp:ssl-force true
set ssl:verify-certificate false
set net:max-retries 1
set net:timeout 10
set net:socket-bind-ipv4 %s
open -u alice,%s ftp://%s
get /vialftp/a.bin -o lftp-plain.bin
quit
`, cluA, testUsers["alice"], c.lb)), 0o600)
		c.run(60*time.Second, "lftp", "-f", "plain.lftp")
		if a, b := mustRead(t, filepath.Join(tree, "a.bin")), mustRead(t, filepath.Join(work, "lftp-plain.bin")); sum(a) != sum(b) {
			t.Fatal("lftp download with defaults differs")
		}
	})

	t.Run("pinhole keyed on the real client", func(t *testing.T) {
		want := randomFile(t, filepath.Join(work, "held.bin"), 1<<20)
		if _, err := srv.Client.PutObject(context.Background(), e2eBucket, clusterPrefix+"held.bin", bytes.NewReader(want),
			int64(len(want)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		cl := c.client(cluA, "alice")
		if rep, err := cl.Cmd("EPSV"); err != nil || rep.Code != 502 {
			t.Fatalf("EPSV through the balancer: %v %v, want 502", rep, err)
		}
		if rep, err := cl.Cmd("FEAT"); err != nil || strings.Contains(rep.Msg, "EPSV") {
			t.Fatalf("FEAT through the balancer: %v %v", rep, err)
		}
		host, port, err := cl.PASV()
		if err != nil {
			t.Fatal(err)
		}
		n := c.node(host) // the 227 names the node that answered, not the balancer
		st := n.status()
		if !strings.Contains(st, cluA) || !strings.Contains(st, strconv.Itoa(port)) || strings.Contains(st, lbSrcIP) {
			t.Fatalf("pinhole on %s is not keyed on the client %s:%d:\n%s", host, cluA, port, st)
		}
		for _, other := range c.nodes {
			if other != n && strings.Contains(other.status(), strconv.Itoa(port)) {
				t.Fatalf("the other node holds a pinhole for port %d", port)
			}
		}
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		n.mustBeDropped(cluB, addr, "attacker at another address")
		n.mustBeDropped(lbSrcIP, addr, "the balancer's own address")
		if got := transferAt(t, cl, host, port, "RETR held.bin", nil); sum(got) != sum(want) {
			t.Fatalf("download after the attack: %d bytes, not the file", len(got))
		}
		// The Go client's own transfers (PASV) work as well.
		if err := cl.Stor("STOR from-go.bin", want); err != nil {
			t.Fatal(err)
		}
		if back, err := cl.Retr("RETR from-go.bin"); err != nil || sum(back) != sum(want) {
			t.Fatalf("Go client round trip: %v", err)
		}
		cl.Quit()
	})

	t.Run("forged header from an untrusted source", func(t *testing.T) {
		for i, n := range c.nodes {
			conn, err := n.dial(cluB, 5*time.Second)("tcp", net.JoinHostPort(nodeIPs[i], strconv.Itoa(ctlPort)))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			r := bufio.NewReader(conn)
			if l, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "220 ") {
				t.Fatalf("direct client greeting: %q %v", l, err)
			}
			// Claims to be client A, to use A's pinholes.
			h := &proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv4,
				SourceAddr:      &net.TCPAddr{IP: net.ParseIP(cluA), Port: 40000},
				DestinationAddr: &net.TCPAddr{IP: net.ParseIP(lbIP), Port: lbCtlPort}}
			if _, err := h.WriteTo(conn); err != nil {
				t.Fatal(err)
			}
			io.WriteString(conn, "AUTH TLS\r\n")
			if l, err := r.ReadString('\n'); err == nil {
				t.Fatalf("forged header: server answered %q", l)
			}
			n.waitLog(fmt.Sprintf("client=%s reason=\"PROXY header from an address not in proxy_protocol\"", conn.LocalAddr()), 10*time.Second)
			if countLines(n.log.String(), "session start", "client="+cluA+":40000") != 0 {
				t.Fatal("the forged address became a session's client")
			}
		}
	})

	t.Run("trusted source without header", func(t *testing.T) {
		n := c.nodes[1]
		conn, err := n.dial(lbSrcIP, 5*time.Second)("tcp", net.JoinHostPort(nodeIPs[1], strconv.Itoa(ctlPort)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		io.WriteString(conn, "USER alice\r\n")
		if b, err := io.ReadAll(conn); len(b) != 0 {
			t.Fatalf("balancer address without header answered %q (%v)", b, err)
		}
		n.waitLog(fmt.Sprintf("client=%s reason=\"no PROXY header from a proxy_protocol address", conn.LocalAddr()), 10*time.Second)
	})

	t.Run("banned client refused after its header", func(t *testing.T) {
		for _, n := range c.nodes {
			n.mustRun(10*time.Second, ftpsdBin, "ban", "add", cluC, "10m", "-c", n.cfgPath)
		}
		// Each node learns an operator's ban from its table within a
		// check (2 s); then every connection of C through the balancer is
		// closed before the greeting, on both nodes.
		refusedInARow := 0
		deadline := time.Now().Add(30 * time.Second)
		for refusedInARow < 4 {
			if time.Now().After(deadline) {
				t.Fatal("the banned client was still greeted through the balancer after 30s")
			}
			conn, err := n0dial(c, cluC)
			if err != nil {
				t.Fatal(err)
			}
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			b, _ := bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			if b == "" {
				refusedInARow++
			} else {
				refusedInARow = 0
				time.Sleep(200 * time.Millisecond)
			}
		}
		// Others are still served, through either node.
		for range 2 {
			c.client(cluA, "alice").Quit()
		}
	})

	t.Run("upload on node A, download on node B", func(t *testing.T) {
		// on opens sessions through the balancer until one lands on node i
		// (the PASV reply names the node that answered), and returns it with
		// that pending passive port.
		on := func(i int) (*ftpclient.Client, string, int) {
			t.Helper()
			for range 8 {
				cl := c.client(cluA, "alice")
				host, port, err := cl.PASV()
				if err != nil {
					t.Fatal(err)
				}
				if host == nodeIPs[i] {
					return cl, host, port
				}
				cl.Quit()
			}
			t.Fatalf("8 sessions through the balancer, none on node %d", i+1)
			return nil, "", 0
		}

		// 9 MiB: more than one 8 MiB part, so the upload is multipart.
		want := randomFile(t, filepath.Join(work, "cross.bin"), 9<<20)

		a, host, port := on(0)
		transferAt(t, a, host, port, "STOR cross.bin", want)
		if rep, err := a.Cmd("MKD made-on-a"); err != nil || rep.Code != 257 {
			t.Fatalf("MKD on node A: %v %v", rep, err)
		}
		a.Quit()
		if got, err := object(t, srv, clusterPrefix+"cross.bin"); err != nil || sum(got) != sum(want) {
			t.Fatalf("the bucket holds %d bytes (%v), want node A's upload", len(got), err)
		}

		b, host, port := on(1)
		if got := transferAt(t, b, host, port, "RETR cross.bin", nil); sum(got) != sum(want) {
			t.Fatalf("node B served %d bytes, not node A's upload", len(got))
		}
		list, err := b.Retr("MLSD")
		if err != nil || !strings.Contains(string(list), "type=dir;") || !strings.Contains(string(list), " made-on-a\r\n") ||
			!strings.Contains(string(list), fmt.Sprintf("size=%d;", len(want))) {
			t.Fatalf("node B's listing does not show node A's changes (%v):\n%s", err, list)
		}
		b.Quit()
	})

	t.Run("logs and xferlog name the real client", func(t *testing.T) {
		var all strings.Builder
		for _, p := range c.xferlogs {
			b, _ := os.ReadFile(p)
			all.Write(b)
		}
		lines := strings.Split(strings.TrimSpace(all.String()), "\n")
		if len(lines) < 8 {
			t.Fatalf("%d xferlog lines for the transfers above:\n%s", len(lines), all.String())
		}
		for _, l := range lines {
			if f := strings.Fields(l); len(f) < 7 || f[6] != cluA {
				t.Errorf("xferlog line does not name client %s: %q", cluA, l)
			}
		}
		logs := c.logs()
		if n := countLines(logs, "msg=transfer", "client="+cluA+":"); n < 8 {
			t.Errorf("%d transfer log lines name client %s", n, cluA)
		}
		if n := countLines(logs, "msg=transfer", "client="+lbSrcIP+":"); n != 0 {
			t.Errorf("%d transfer log lines name the balancer", n)
		}
		if n := countLines(logs, "msg=login", "client="+lbSrcIP+":"); n != 0 {
			t.Errorf("%d logins logged with the balancer's address", n)
		}
		// HAProxy's health checks (LOCAL headers, every second) pass and
		// are quiet.
		if ha := c.haLog.String(); strings.Contains(ha, "DOWN") || !strings.Contains(ha, "Health check") {
			t.Errorf("health checks failed, or were not logged:\n%s", ha)
		}
		if n := countLines(logs, "WARN", "client="+lbSrcIP+":"); n != 1 {
			t.Errorf("%d warnings about the balancer's address, want 1 (the header-less connection):\n%s", n, logs)
		}
	})
}

// transferAt runs cmd (RETR, or STOR of up) on the data connection to
// host:port that an earlier PASV of cl announced, requiring its 150 and
// 226; it returns what a RETR received.
func transferAt(t *testing.T, cl *ftpclient.Client, host string, port int, cmd string, up []byte) []byte {
	t.Helper()
	data, err := cl.DialDataAt(host, port)
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	if rep, err := cl.Cmd("%s", cmd); err != nil || rep.Code != 150 {
		t.Fatalf("%s on %s: %v %v", cmd, host, rep, err)
	}
	data.SetDeadline(time.Now().Add(60 * time.Second))
	var got []byte
	if up != nil {
		_, err = data.Write(up)
	} else {
		got, err = io.ReadAll(data)
	}
	if err != nil {
		t.Fatalf("%s on %s: %v", cmd, host, err)
	}
	data.Close()
	if rep, err := cl.Read(); err != nil || rep.Code != 226 {
		t.Fatalf("after %s on %s: %v %v", cmd, host, rep, err)
	}
	return got
}

// n0dial connects to the balancer from src.
func n0dial(c *cluster, src string) (net.Conn, error) {
	return c.nodes[0].dial(src, 5*time.Second)("tcp", c.lb)
}

// checkFallback requires a client's verbose output to show, in order, the
// EPSV attempt, its 5xx refusal and the PASV that followed, and the 227 to
// name one of the nodes (not the balancer).
func checkFallback(t *testing.T, what, out string, steps ...string) {
	t.Helper()
	at := 0
	for _, s := range steps {
		i := strings.Index(out[at:], s)
		if i < 0 {
			t.Fatalf("%s: output lacks %q after position %d:\n%s", what, s, at, out)
		}
		at += i + len(s)
	}
	m := pasvRE.FindStringSubmatch(out[at:])
	if m == nil {
		t.Fatalf("%s: no 227 reply after the PASV:\n%s", what, out)
	}
	ip := strings.Join(m[1:5], ".")
	found := false
	for _, n := range nodeIPs {
		found = found || n == ip
	}
	if !found {
		t.Fatalf("%s: PASV named %s, not a node", what, ip)
	}
	// curl: "Connecting to 10.0.0.10 (10.0.0.10) port P"; lftp:
	// "Connecting data socket to (10.0.0.10) port P".
	if !strings.Contains(out[at:], ip+") port") {
		t.Fatalf("%s: the data connection did not go to %s, the node PASV named:\n%s", what, ip, out)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
