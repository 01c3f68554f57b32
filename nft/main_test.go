package nft

import (
	"os"
	"testing"

	"github.com/ftpsd/ftpsd/internal/testns"
)

func TestMain(m *testing.M) {
	testns.CleanupStale()
	os.Exit(m.Run())
}
