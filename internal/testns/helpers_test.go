package testns

import (
	"os/exec"
	"testing"
)

func runHost(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func runHostErr(name string, args ...string) error {
	return exec.Command(name, args...).Run()
}
