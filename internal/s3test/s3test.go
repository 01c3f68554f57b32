// Package s3test runs a real S3 server for tests: SeaweedFS, at the version
// testdata/seaweedfs/go.mod pins, built into the user's cache directory the
// first time a test needs it.
package s3test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Test credentials of the identity the server is configured with.
const (
	AccessKey = "ftpsd-test-access"
	SecretKey = "ftpsd-test-secret-key"
)

// module is the tools module that pins SeaweedFS, relative to this file.
func moduleDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("s3test: cannot locate the source tree")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "seaweedfs"), nil
}

// version reads the pinned SeaweedFS version from the tools module.
func version(dir string) (string, error) {
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "github.com/seaweedfs/seaweedfs" {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("s3test: %s/go.mod does not require github.com/seaweedfs/seaweedfs", dir)
}

// Binary returns the path of the weed binary, building it when the cache
// does not have it (about 7 minutes on 2 cores). A file lock keeps test
// packages running in parallel from building it twice; the build goes to
// a temporary name and is renamed into place, so a killed build leaves
// nothing that looks finished.
func Binary() (string, error) {
	mod, err := moduleDir()
	if err != nil {
		return "", err
	}
	ver, err := version(mod)
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("s3test: %w", err)
	}
	dir := filepath.Join(cache, "ftpsd")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("s3test: %w", err)
	}
	bin := filepath.Join(dir, "weed-"+ver)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	lock, err := os.OpenFile(bin+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("s3test: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("s3test: lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil // built by another package while we waited
	}
	tmp := fmt.Sprintf("%s.build-%d", bin, os.Getpid())
	defer os.Remove(tmp)
	fmt.Fprintf(os.Stderr, "s3test: building SeaweedFS %s into %s (several minutes, once)\n", ver, bin)
	build := exec.Command("go", "build", "-o", tmp, "github.com/seaweedfs/seaweedfs/weed")
	build.Dir = mod
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("s3test: build SeaweedFS %s: %w\n%s", ver, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("s3test: %w", err)
	}
	return bin, nil
}

// Options place the server.
type Options struct {
	// Command makes the server's command; default exec.Command. Pass
	// testns.NS.Command to run it inside a test's network namespace.
	Command func(name string, args ...string) *exec.Cmd
	// Dial reaches the server (default: a plain dialer); inside a namespace,
	// a dialer that connects from there.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Dir holds the data, config and log (default: a new temporary
	// directory, removed by Stop).
	Dir string
	// IP is the address the server binds and announces (default
	// 127.0.0.1); another address of a namespace lets other namespaces
	// reach it.
	IP string
	// VolumeSizeMB and MaxVolumes bound the disk the store may use
	// (defaults 64 and 16: up to 1 GiB).
	VolumeSizeMB, MaxVolumes int
}

// Server is a running SeaweedFS with its S3 gateway on Options.IP.
type Server struct {
	Endpoint string // http://IP:PORT
	Host     string // IP:PORT
	Client   *minio.Client
	// Transport reaches the server (through Options.Dial).
	Transport http.RoundTripper

	cmd     *exec.Cmd
	done    chan struct{}
	dir     string
	tempDir bool
	// sockets are the Unix sockets weed puts in /tmp whatever -dir says
	// (/tmp/seaweedfs-SERVICE-grpc-PORT.sock), removed by Stop.
	sockets []string
}

// freePorts finds n distinct free TCP ports on loopback. Inside a fresh
// namespace any port is free, and these are from the ephemeral range,
// away from the fixed ports tests use.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// lockedBuffer keeps the server's output for a failure message; its
// writers are the process's stdout and stderr copiers.
type lockedBuffer struct {
	ch chan struct{}
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.ch <- struct{}{}
	defer func() { <-l.ch }()
	if l.b.Len() > 1<<20 {
		return len(p), nil // enough to diagnose; do not grow without bound
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.ch <- struct{}{}
	defer func() { <-l.ch }()
	return l.b.String()
}

// errExited is a server that ended during start, typically because a port
// chosen free was taken meanwhile by another process on the machine.
var errExited = errors.New("weed exited during start")

// Start runs `weed server` with master, volume server, filer and S3
// gateway on loopback, small volumes, one S3 identity (AccessKey,
// SecretKey), and waits until S3 answers. Stop ends it. A server that
// exits during start is tried again with other ports, twice.
func Start(o Options) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		s, err := start(bin, o)
		if err == nil || !errors.Is(err, errExited) || attempt == 3 {
			return s, err
		}
	}
}

func start(bin string, o Options) (*Server, error) {
	var err error
	if o.Command == nil {
		o.Command = exec.Command
	}
	if o.Dial == nil {
		o.Dial = (&net.Dialer{Timeout: 5 * time.Second}).DialContext
	}
	if o.IP == "" {
		o.IP = "127.0.0.1"
	}
	if o.VolumeSizeMB == 0 {
		o.VolumeSizeMB = 64
	}
	if o.MaxVolumes == 0 {
		o.MaxVolumes = 16
	}
	s := &Server{dir: o.Dir, done: make(chan struct{})}
	if s.dir == "" {
		if s.dir, err = os.MkdirTemp("", "ftpsd-weed-"); err != nil {
			return nil, err
		}
		s.tempDir = true
	}
	data := filepath.Join(s.dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	conf := filepath.Join(s.dir, "s3.json")
	identities := fmt.Sprintf(`{"identities":[{"name":"ftpsd-test","credentials":[{"accessKey":%q,"secretKey":%q}],`+
		`"actions":["Admin","Read","List","Tagging","Write"]}]}`, AccessKey, SecretKey)
	if err := os.WriteFile(conf, []byte(identities), 0o600); err != nil {
		return nil, err
	}
	p, err := freePorts(8)
	if err != nil {
		return nil, err
	}
	args := []string{"server",
		"-ip=" + o.IP, "-ip.bind=" + o.IP, "-dir=" + data,
		fmt.Sprintf("-master.port=%d", p[0]), fmt.Sprintf("-master.port.grpc=%d", p[1]),
		fmt.Sprintf("-volume.port=%d", p[2]), fmt.Sprintf("-volume.port.grpc=%d", p[3]),
		"-filer", fmt.Sprintf("-filer.port=%d", p[4]), fmt.Sprintf("-filer.port.grpc=%d", p[5]),
		"-filer.localSocket=" + filepath.Join(s.dir, "filer.sock"),
		"-s3", fmt.Sprintf("-s3.port=%d", p[6]), fmt.Sprintf("-s3.port.grpc=%d", p[7]),
		"-s3.port.iceberg=0", "-s3.port.lance=0",
		"-s3.localSocket=" + filepath.Join(s.dir, "s3.sock"), "-s3.config=" + conf,
		fmt.Sprintf("-master.volumeSizeLimitMB=%d", o.VolumeSizeMB), fmt.Sprintf("-volume.max=%d", o.MaxVolumes),
		"-master.telemetry=false",
	}
	for _, svc := range []struct {
		name string
		port int
	}{{"master", p[1]}, {"volume", p[3]}, {"filer", p[5]}, {"s3", p[7]}} {
		s.sockets = append(s.sockets, fmt.Sprintf("/tmp/seaweedfs-%s-grpc-%d.sock", svc.name, svc.port))
	}
	s.cmd = o.Command(bin, args...)
	s.cmd.Dir = s.dir
	logBuf := &lockedBuffer{ch: make(chan struct{}, 1)}
	s.cmd.Stdout, s.cmd.Stderr = logBuf, logBuf
	// Its own process group, so that Stop reaches anything it forks.
	// (No Pdeathsig: it fires when the forking OS thread ends, and Go
	// retires threads, namespace-locked ones in particular, at any time.)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		s.cleanup()
		return nil, fmt.Errorf("s3test: start weed: %w", err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	s.Host = net.JoinHostPort(o.IP, fmt.Sprint(p[6]))
	s.Endpoint = "http://" + s.Host
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = o.Dial
	s.Transport = tr
	s.Client, err = minio.New(s.Host, &minio.Options{
		Creds: credentials.NewStaticV4(AccessKey, SecretKey, ""), BucketLookup: minio.BucketLookupPath,
		Transport: tr, Region: "us-east-1",
	})
	if err != nil {
		s.Stop()
		return nil, err
	}
	// The gateway answers before the filer and volume server can store:
	// wait until a bucket can be made and an object written.
	deadline := time.Now().Add(90 * time.Second)
	probe := "ftpsd-probe"
	for {
		err = s.try(probe)
		if err == nil {
			break
		}
		exited := false
		select {
		case <-s.done:
			err = fmt.Errorf("%w: %v", errExited, s.cmd.ProcessState)
			exited = true
		default:
		}
		if exited || time.Now().After(deadline) {
			out := logBuf.String()
			s.Stop()
			return nil, fmt.Errorf("s3test: SeaweedFS S3 not ready: %w\n%s", err, tail(out, 4000))
		}
		time.Sleep(250 * time.Millisecond)
	}
	return s, nil
}

func (s *Server) try(bucket string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Client.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		if r := minio.ToErrorResponse(err); r.Code != "BucketAlreadyOwnedByYou" && r.Code != "BucketAlreadyExists" {
			return err
		}
	}
	_, err := s.Client.PutObject(ctx, bucket, "probe", strings.NewReader("ok"), 2, minio.PutObjectOptions{})
	return err
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// Bucket makes a bucket (if it does not exist) and returns its name.
func (s *Server) Bucket(name string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Client.MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		if r := minio.ToErrorResponse(err); r.Code != "BucketAlreadyOwnedByYou" && r.Code != "BucketAlreadyExists" {
			return "", fmt.Errorf("s3test: make bucket %s: %w", name, err)
		}
	}
	return name, nil
}

// CredentialsFile writes the test keys in AWS shared-credentials format
// (for [storage.s3] credentials_file) and returns its path.
func (s *Server) CredentialsFile(dir string) (string, error) {
	path := filepath.Join(dir, "s3-credentials")
	body := fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", AccessKey, SecretKey)
	return path, os.WriteFile(path, []byte(body), 0o600)
}

// Stop ends the server and removes its temporary directory and sockets.
// It kills at once: the data is thrown away, and weed's orderly shutdown
// takes about 10 s.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
	s.cleanup()
}

func (s *Server) cleanup() {
	for _, sock := range s.sockets {
		os.Remove(sock)
	}
	if s.tempDir {
		os.RemoveAll(s.dir)
	}
}
