// Command dropcheck switches to an account with privdrop, then opens a new
// nftables netlink connection and a pinhole, as ftpsd does when it restores
// its table after the switch. It is built without cgo by privdrop's tests.
//
// usage: dropcheck ACCOUNT KEEP_NET_ADMIN(yes|no)
package main

import (
	"fmt"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ftpsd/ftpsd/internal/privdrop"
	"github.com/ftpsd/ftpsd/nft"
)

func main() {
	acct, err := privdrop.Lookup(os.Args[1])
	if err != nil {
		fmt.Println("lookup:", err)
		os.Exit(2)
	}
	var keep []privdrop.Cap
	if os.Args[2] == "yes" {
		keep = []privdrop.Cap{unix.CAP_NET_ADMIN}
	}
	if err := privdrop.SwitchTo(acct, keep); err != nil {
		fmt.Println("switch:", err)
		os.Exit(2)
	}
	fw, err := nft.Setup(nft.Config{Table: "privdrop_test", PortMin: 50000, PortMax: 50009, Timeout: time.Second})
	if err != nil {
		fmt.Println("nftables:", err)
		os.Exit(3)
	}
	defer fw.Release()
	if err := fw.Open(nft.Pinhole{Client: netip.MustParseAddr("192.0.2.1"), Port: 50001}); err != nil {
		fmt.Println("pinhole:", err)
		os.Exit(3)
	}
	fmt.Printf("ok uid=%d\n", os.Geteuid())
}
