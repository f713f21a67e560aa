// Package middleware will hold the standard handler wrappers of durabus —
// Retry, Recover, Timeout, Logging, Dedupe, DeadLetter and Metrics — each a
// func(bus.Handler) bus.Handler in a file of its own, and a helper that
// builds the recommended chain. Nothing is implemented here yet.
package middleware
