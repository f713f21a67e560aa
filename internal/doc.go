// Package internal holds code shared by durabus's own packages and tests
// only: internal/redistest starts private redis-server processes for tests.
package internal
