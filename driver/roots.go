package driver

import (
	"fmt"
	"os"
	"sync"
)

// Sessions of one user share one open root directory: a descriptor per
// idle session would otherwise double what each session costs in file
// descriptors (10,000 idle sessions would need 20,000), for a handle that
// is the same for all of them. os.Root is safe for concurrent use.
var roots = struct {
	sync.Mutex
	byDir map[string]*sharedRoot
}{byDir: map[string]*sharedRoot{}}

type sharedRoot struct {
	dir  string
	root *os.Root
	refs int
}

// openRoot returns the shared root of dir, opening it if no session holds
// it, or if the directory at that path is no longer the one held (replaced
// since): then new sessions get the new one, as they would with their own.
func openRoot(dir string) (*sharedRoot, error) {
	roots.Lock()
	defer roots.Unlock()
	if sr := roots.byDir[dir]; sr != nil {
		held, err1 := sr.root.Stat(".")
		now, err2 := os.Stat(dir)
		if err1 == nil && err2 == nil && os.SameFile(held, now) {
			sr.refs++
			return sr, nil
		}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open user root %s: %w", dir, err)
	}
	sr := &sharedRoot{dir: dir, root: root, refs: 1}
	roots.byDir[dir] = sr
	return sr, nil
}

// release drops one reference; the last one closes the root.
func (sr *sharedRoot) release() error {
	roots.Lock()
	defer roots.Unlock()
	if sr.refs--; sr.refs > 0 {
		return nil
	}
	if roots.byDir[sr.dir] == sr {
		delete(roots.byDir, sr.dir)
	}
	return sr.root.Close()
}
