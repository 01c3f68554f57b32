package nft

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ftpsd/ftpsd/internal/testns"
)

// inNS runs fn with the calling thread in ns, where sockets are created.
func inNS[T any](t *testing.T, ns *testns.NS, fn func() (T, error)) (T, error) {
	t.Helper()
	var v T
	var err error
	if derr := ns.Do(func() error { v, err = fn(); return nil }); derr != nil {
		t.Fatal(derr)
	}
	return v, err
}

func TestClaimOnePerTableAndNamespace(t *testing.T) {
	a, b := testns.New(t), testns.New(t)
	claim := func(ns *testns.NS, table string) (*Claim, error) {
		return inNS(t, ns, func() (*Claim, error) { return ClaimTable(table) })
	}
	first, err := claim(a, "ftpsd")
	if err != nil {
		t.Fatal(err)
	}
	first.Report(func() Restores { return Restores{Count: 3, Last: Restore{Missing: "table"}} })

	_, err = claim(a, "ftpsd")
	var owned *OwnedError
	if !errors.As(err, &owned) || owned.PID != os.Getpid() || !strings.Contains(err.Error(), "inet ftpsd") {
		t.Fatalf("second claim = %v; want OwnedError naming pid %d", err, os.Getpid())
	}
	// Another table, or the same table in another namespace, is free.
	other, err := claim(a, "ftpsd2")
	if err != nil {
		t.Fatalf("claim of another table: %v", err)
	}
	other.Release()
	inB, err := claim(b, "ftpsd")
	if err != nil {
		t.Fatalf("claim in another namespace: %v", err)
	}
	inB.Release()

	st, err := inNS(t, a, func() (*OwnerStatus, error) { return QueryOwner("ftpsd") })
	if err != nil || st == nil || st.PID != os.Getpid() || st.Restores.Count != 3 || st.Restores.Last.Missing != "table" || time.Since(st.Since) > time.Minute {
		t.Fatalf("QueryOwner = %+v, %v", st, err)
	}
	first.Release()
	if st, err := inNS(t, a, func() (*OwnerStatus, error) { return QueryOwner("ftpsd") }); st != nil || err != nil {
		t.Fatalf("QueryOwner after Release = %+v, %v; want nobody", st, err)
	}
	again, err := claim(a, "ftpsd")
	if err != nil {
		t.Fatalf("claim after Release: %v", err)
	}
	again.Release()
}
