package privdrop

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ftpsd/ftpsd/internal/testns"
)

func TestMain(m *testing.M) {
	testns.CleanupStale()
	os.Exit(m.Run())
}

// TestNetlinkAfterSwitch: after switching to nobody with CAP_NET_ADMIN kept,
// a process can still open a new nftables connection and change its table
// (what restoring the table after the switch needs); without it, it cannot.
// The check runs in its own network namespace, built without cgo.
func TestNetlinkAfterSwitch(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "dropcheck")
	build := exec.Command("go", "build", "-o", bin, "./testdata/dropcheck")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	for _, c := range []struct {
		keep, want string
		ok         bool
	}{{"yes", "ok uid=", true}, {"no", "nftables:", false}} {
		ns := testns.New(t)
		out, err := ns.Command(bin, "nobody", c.keep).CombinedOutput()
		if (err == nil) != c.ok || !strings.HasPrefix(string(out), c.want) {
			t.Errorf("keep CAP_NET_ADMIN %s: %v\n%s", c.keep, err, out)
		}
		if c.ok && !strings.Contains(ns.Run(t, "nft", "list", "table", "inet", "privdrop_test"), "192.0.2.1 . 50001") {
			t.Errorf("pinhole not in the table")
		}
	}
}

func TestReadStatusAndNames(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status")
	os.WriteFile(path, []byte("Name:\tx\nUid:\t65534\t65534\t65534\t65534\nCapPrm:\t0000000000001000\nCapEff:\t0000000000001000\n"), 0o644)
	st, err := readStatus(path)
	if err != nil || st.uids != [4]int{65534, 65534, 65534, 65534} || st.capEff != 1<<12 || st.capPrm != 1<<12 {
		t.Fatalf("%+v %v", st, err)
	}
	if got := Names([]Cap{12, 10}); got != "cap_net_admin,cap_net_bind_service" {
		t.Fatal(got)
	}
}
