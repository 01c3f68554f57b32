// Command loadgen is the measuring half of the side-by-side benchmark in
// bench/run.sh (ftpsd against vsftpd). run.sh builds the namespaces, the
// firewall and both servers; loadgen runs inside the client namespace
// (started with nsenter --net, so /sys/fs/cgroup and /proc stay visible),
// drives one server per call, reads the server's CPU time and memory from the
// cgroup run.sh put it in, and appends one JSON line per run to a results
// file. "loadgen report" turns that file into the tables of bench/README.md.
//
// Subcommands (each bounded in count and time, each stops by itself):
//
//	hash      time one sha512crypt verification (via perl's crypt(3), the
//	          libcrypt that pam_unix uses) and pick the bcrypt cost that costs
//	          the same; write both hashes
//	xfer      one 1 GiB (or smaller) download or upload with curl
//	sessions  N parallel clients for D seconds, each session = connect, AUTH
//	          TLS, login, PBSZ/PROT, PASV, LIST, QUIT; driver "go" (this
//	          program) or "curl"
//	idle      N idle logged-in TLS sessions; PSS per session, open rate,
//	          and (-after) the PSS some time after they closed
//	mirror    one lftp mirror of a small-file tree, down or up
//	tlsserve  send a file over every TLS connection (the bare stream)
//	tlsstream read one bare TLS stream; MB/s
//	pasv      PASV round trip and reply-to-data-connection latency
//	attack    an attacker address sweeps the passive range while a
//	          legitimate client holds a PASV reply
//	brute     a password brute force against ftpsd while a legitimate
//	          client logs in (bench/brute.sh)
//	meta      store a description of the machine and versions with the results
//	report    print the results table and write it as markdown
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
)

const usage = `usage: loadgen <hash|xfer|sessions|idle|pasv|attack|brute|brute-report|mirror|tlsserve|tlsstream|meta|report> [flags]
run "loadgen <command> -h" for the flags of one command; see bench/README.md`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	cmds := map[string]func([]string) error{
		"hash":         cmdHash,
		"xfer":         cmdXfer,
		"sessions":     cmdSessions,
		"idle":         cmdIdle,
		"pasv":         cmdPasv,
		"attack":       cmdAttack,
		"brute":        cmdBrute,
		"brute-report": cmdBruteReport,
		"report":       cmdReport,
		"meta":         cmdMeta,
		"mirror":       cmdMirror,
		"tlsserve":     cmdTLSServe,
		"tlsstream":    cmdTLSStream,
	}
	run, ok := cmds[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "loadgen: unknown command %q\n%s\n", os.Args[1], usage)
		os.Exit(2)
	}
	if err := run(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "loadgen %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// Result is one line of the results file: one measurement of one server in one run.
type Result struct {
	Test   string             `json:"test"`
	Server string             `json:"server"`
	Run    int                `json:"run"`
	Values map[string]float64 `json:"values"`
	Info   map[string]string  `json:"info,omitempty"`
}

var outMu sync.Mutex

// emit appends r to path (if set) and prints a one-line summary.
func emit(path string, r Result) error {
	outMu.Lock()
	defer outMu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "%-14s %-7s run %d:", r.Test, r.Server, r.Run)
	for _, k := range sortedKeys(r.Values) {
		fmt.Fprintf(&b, " %s=%s", k, fmtNum(r.Values[k]))
	}
	for _, k := range sortedKeys(r.Info) {
		fmt.Fprintf(&b, " %s=%q", k, r.Info[k])
	}
	fmt.Println(b.String())
	if path == "" {
		return nil
	}
	return appendResult(path, r)
}

// appendResult appends r to the results file at path as one JSON line.
func appendResult(path string, r Result) error {
	line, err := json.Marshal(r)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write(append(line, '\n'))
	return err
}

// common holds the flags every measuring command shares.
type common struct {
	server string
	run    int
	out    string
	cgroup string
}

// flags starts a subcommand's flag set with the flags every measurement
// against a server shares.
func flags(name string) (*flag.FlagSet, *common, *target) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	cm, t := &common{}, &target{}
	cm.register(fs)
	t.register(fs)
	return fs, cm, t
}

// parse parses a measuring subcommand's args and checks the flags every
// measurement needs: -server, -cgroup if it reads the server's cgroup, and
// the target's -addr, -user and -src.
func parse(fs *flag.FlagSet, args []string, cm *common, t *target, needCgroup bool) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cm.check(needCgroup); err != nil {
		return err
	}
	return t.check()
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.server, "server", "", "server label in the results (vsftpd, ftpsd)")
	fs.IntVar(&c.run, "run", 1, "run number")
	fs.StringVar(&c.out, "out", "", "append JSON results to this file")
	fs.StringVar(&c.cgroup, "cgroup", "", "cgroup directory holding the server's processes")
}

func (c *common) check(needCgroup bool) error {
	if c.server == "" {
		return fmt.Errorf("-server is required")
	}
	if needCgroup && c.cgroup == "" {
		return fmt.Errorf("-cgroup is required")
	}
	return nil
}
