package driver

import "time"

// TransferRecord describes one ended RETR, STOR or APPE, for the transfer
// log and metrics (Options.OnTransfer).
type TransferRecord struct {
	Path      string // as the client named it, inside the user's root
	Direction string // "upload" or "download"
	Offset    int64  // REST offset
	Bytes     int64  // file bytes moved
	Start     time.Time
	Duration  time.Duration
	Err       error // nil when the transfer completed
}
