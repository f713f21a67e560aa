package middleware

import "time"

// SetDedupeSaveTimeout sets the bound of Dedupe's Commit and Abort until
// the returned function restores it. Not for parallel tests.
func SetDedupeSaveTimeout(d time.Duration) (restore func()) {
	old := dedupeSaveTimeout
	dedupeSaveTimeout = d
	return func() { dedupeSaveTimeout = old }
}
