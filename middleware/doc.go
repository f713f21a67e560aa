// Package middleware holds the standard handler wrappers of durabus, each a
// bus.Middleware in a file of its own: Retry, Recover, Timeout, Logging,
// Dedupe, DeadLetter and Metrics, and Default, which builds the recommended
// chain
//
//	Tracing → Metrics → Logging → DeadLetter → Retry → Timeout → Dedupe → Recover → handler
//
// (see docs/middleware.md for why this order). Tracing lives in the
// sub-package middleware/tracing. Every middleware is safe for concurrent
// use by the topics of a bus.
//
// Install the chain on a bus with bus.WithMiddleware(middleware.Default(o)...).
package middleware
