package middleware

import (
	"context"
	"sync"
)

// call is what the middleware of one handler call tell each other through
// the ctx: an outer middleware (Logging, Metrics, DeadLetter) installs it,
// inner ones (Retry, Dedupe, DeadLetter) fill it in.
type call struct {
	mu           sync.Mutex
	attempt      int
	duplicate    bool
	deadLettered string // the dead-letter topic, once published there
	notes        []error
}

type callKey struct{}

func callFrom(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{}).(*call)
	return c
}

// withCall returns ctx with a call record, reusing the one already there.
func withCall(ctx context.Context) (context.Context, *call) {
	if c := callFrom(ctx); c != nil {
		return ctx, c
	}
	c := &call{}
	return context.WithValue(ctx, callKey{}, c), c
}

func (c *call) setAttempt(n int) {
	c.mu.Lock()
	c.attempt = n
	c.mu.Unlock()
}

func (c *call) attempts() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.attempt < 1 {
		return 1
	}
	return c.attempt
}

func (c *call) markDuplicate() {
	c.mu.Lock()
	c.duplicate = true
	c.mu.Unlock()
}

func (c *call) isDuplicate() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.duplicate
}

func (c *call) markDead(topic string) {
	c.mu.Lock()
	c.deadLettered = topic
	c.mu.Unlock()
}

func (c *call) deadTopic() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deadLettered
}

// note records a problem that did not fail the call (a dedupe mark that
// could not be saved), for Logging.
func (c *call) note(err error) {
	c.mu.Lock()
	c.notes = append(c.notes, err)
	c.mu.Unlock()
}

func (c *call) takeNotes() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.notes
	c.notes = nil
	return n
}

// Attempt returns the number of the current handler call within Retry: 1
// for the first call, 2 for the first retry, and so on. Outside Retry it
// is 1. Handlers and inner middleware call it with the ctx they were given.
func Attempt(ctx context.Context) int {
	if c := callFrom(ctx); c != nil {
		return c.attempts()
	}
	return 1
}

// Report is what the middleware inside a handler call found out about it,
// for middleware outside this package that wrap the chain (such as
// middleware/metrics).
type Report struct {
	// Attempts is the number of handler calls Retry made (1 without Retry).
	Attempts int
	// Duplicate is true when Dedupe dropped the event as already handled.
	Duplicate bool
	// DeadTopic is the dead-letter topic DeadLetter sent the event to, or
	// "" when it sent none.
	DeadTopic string
}

// Track returns ctx with a record that Retry, Dedupe and DeadLetter fill in
// while the handler call runs (the record already in ctx, when an outer
// middleware installed one), and a function that reads it. Call the
// function after the inner handler returned. Safe for concurrent use.
func Track(ctx context.Context) (context.Context, func() Report) {
	ctx, c := withCall(ctx)
	return ctx, func() Report {
		c.mu.Lock()
		defer c.mu.Unlock()
		return Report{Attempts: max(c.attempt, 1), Duplicate: c.duplicate, DeadTopic: c.deadLettered}
	}
}
