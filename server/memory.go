package server

import (
	"runtime/debug"
	"time"
)

// Returning memory after a burst of sessions.
//
// Go keeps the heap it grew for a burst: freed objects are only found by the
// next collection, and an idle server allocates so little that the next one
// comes from the runtime's two-minute forced GC; the background scavenger
// then gives pages back slowly. Measured here: 5,000 idle TLS sessions took
// ftpsd from 15 MB to about 240 MB, and it stayed there minutes after they
// closed. A memory limit (GOMEMLIMIT) does not help: it only makes the GC
// work harder near the limit, it does not return what lies below it.
//
// So ftpsd returns memory itself when the number of sessions has fallen a
// lot: a forced collection and release (debug.FreeOSMemory) costs about one
// GC of what is still live, which after a fall is small, and it happens at
// most once per check and only after a fall of releaseMinDrop sessions, so a
// steady load never pays for it.
const (
	// releaseCheck is how often the session count is looked at.
	releaseCheck = 5 * time.Second
	// releaseMinDrop is the smallest fall in sessions worth a forced GC
	// (about 3.5 MiB of session memory at ~36 KiB each).
	releaseMinDrop = 100
)

// shouldRelease decides when memory is handed back: when the session count
// has fallen to half its peak since the last release, by at least
// releaseMinDrop. A burst that drains slowly releases at each halving. The
// peak is kept by register, so that a burst shorter than releaseCheck
// counts too.
func shouldRelease(peak, sessions int) bool {
	return peak-sessions >= releaseMinDrop && sessions <= peak/2
}

// releaseMemory runs until shutdown begins, returning freed memory to the
// OS after the session count falls (see shouldRelease).
func (s *Server) releaseMemory() {
	tick := time.NewTicker(releaseCheck)
	defer tick.Stop()
	for range tick.C {
		release, n, peak, closing := s.releaseStep()
		if closing {
			return
		}
		if release {
			start := time.Now()
			debug.FreeOSMemory()
			s.log.Debug("returned free memory to the OS", "sessions", n, "peak", peak,
				"took", time.Since(start).Round(time.Microsecond))
		}
	}
}

// releaseStep decides whether to release now and, if so, resizes the maps
// that grew with the burst: Go's maps never shrink, so the session map of
// 10,000 sessions would keep its 10,000 slots (and its spans) for good.
func (s *Server) releaseStep() (release bool, n, peak int, closing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, peak, closing = len(s.sessions), s.peak, s.closing
	release = !closing && shouldRelease(peak, n)
	if release {
		s.peak = n
		s.sessions = resized(s.sessions)
		s.perIP = resized(s.perIP)
	}
	return release, n, peak, closing
}

// resized copies m into a map made for what it holds now.
func resized[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
