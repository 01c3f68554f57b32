package nft

import (
	"os"
	"testing"

	"github.com/ftpsd/ftpsd/internal/testns"
)

func TestMain(m *testing.M) {
	// The unprivileged child of TestNoCapNetAdmin must not touch
	// namespaces; it only tries (and fails) to use nftables.
	if os.Getenv("FTPSD_NFT_NOCAP_CHILD") == "" {
		testns.CleanupStale()
	}
	os.Exit(m.Run())
}
