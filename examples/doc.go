// Package examples is the home of runnable programs, one folder each
// (chat, orders, worker, patterns, monitor, tracing), every one a package
// main with a smoke test. None is written yet.
package examples
