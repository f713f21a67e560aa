// Package middleware holds the standard handler wrappers of durabus, each a
// bus.Middleware in a file of its own: Retry, Recover, Timeout, Logging,
// Dedupe (with an in-memory store) and DeadLetter, and Default, which
// builds the recommended chain
//
//	Tracing → Metrics → Logging → DeadLetter → Retry → Timeout → Dedupe → Recover → handler
//
// (see docs/middleware.md for why this order). The package depends on the
// standard library and bus alone; what needs more lives beside it:
// OpenTelemetry spans in middleware/tracing, OpenTelemetry metrics in
// middleware/metrics, and the Redis dedupe store in middleware/redisdedupe.
// Every middleware is safe for concurrent use by the topics of a bus.
//
// Install the chain on a bus with bus.WithMiddleware(middleware.Default(o)...).
package middleware
