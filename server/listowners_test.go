package server

import "testing"

// LIST shows names where the system has them, the number where it has not.
func TestIDName(t *testing.T) {
	for _, c := range []struct {
		group bool
		id    uint32
		want  string
	}{
		{false, 0, "root"},
		{true, 0, "root"},
		{false, 4000000123, "4000000123"},
		{true, 4000000123, "4000000123"},
	} {
		for range 2 { // the second answer comes from the cache
			if got := idName(c.group, c.id); got != c.want {
				t.Errorf("idName(group %v, %d) = %q, want %q", c.group, c.id, got, c.want)
			}
		}
	}
}
