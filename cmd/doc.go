// Package cmd holds the durabus command-line tool in cmd/durabus (demo,
// publish, tail, replay, stats, dead, bench). It is not written yet.
package cmd
