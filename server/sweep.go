package server

import (
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ftpsd/ftpsd/driver"
)

// sweepParts removes upload part files left by an ftpsd that died mid-upload.
// Any part file older than this start belongs to no live transfer. Runs in
// the background: a large tree must not delay the start.
func sweepParts(roots []string, before time.Time, log *slog.Logger) {
	seen := map[string]bool{}
	for _, root := range roots {
		if seen[root] {
			continue
		}
		seen[root] = true
		removed := 0
		// WalkDir does not follow symlinks, so the sweep stays inside the root.
		filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() || !strings.HasPrefix(d.Name(), driver.PartPrefix) {
				return nil
			}
			if fi, err := d.Info(); err == nil && fi.ModTime().Before(before) {
				if os.Remove(path) == nil {
					removed++
				}
			}
			return nil
		})
		if removed > 0 {
			log.Info("removed parts of uploads interrupted by an earlier stop", "root", root, "files", removed)
		}
	}
}
