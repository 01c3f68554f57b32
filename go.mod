module github.com/ftpsd/ftpsd

go 1.26.8

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/fclairamb/ftpserverlib v0.32.3
	github.com/google/nftables v0.3.0
	github.com/spf13/afero v1.15.0
	golang.org/x/crypto v0.59.0
	golang.org/x/sys v0.50.0
)

require (
	github.com/google/go-cmp v0.6.0 // indirect
	github.com/mdlayher/netlink v1.7.3-0.20250113171957-fbb4dce95f42 // indirect
	github.com/mdlayher/socket v0.5.0 // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/sync v0.25.0 // indirect
	golang.org/x/text v0.44.0 // indirect
)
