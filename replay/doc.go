// Package replay is the follower: it turns a transport's at-most-once live
// frames into an in-order, at-least-once stream per topic.
//
// For each topic a Follower keeps a cursor (epoch, seq, backlog id) and runs
// this state machine:
//
//  1. subscribe first (the transport confirms before returning) and buffer
//     live frames;
//  2. catch up from the backlog after the cursor, in pages;
//  3. hand off to live, dropping frames at or below the cursor;
//  4. live: seq = cursor+1 is delivered, seq ≤ cursor is a duplicate and
//     dropped, a jump or a new epoch is repaired from the backlog;
//  5. on connection trouble (the transport's Reconnected, Stalled and
//     Dropped signals, or a subscription that ends) repair from the backlog,
//     resubscribing with exponential backoff when needed; a periodic head
//     check catches a lost last event;
//  6. what the backlog no longer holds is reported as a *LossError through
//     the OnLoss callback, a counter and the log — never skipped silently —
//     and delivery goes on from the oldest event still held.
//
// Handlers of one topic run one at a time, in order; topics run
// concurrently, and a slow handler never blocks the transport's reader:
// frames queue in a bounded inbox per topic, and an overflow is repaired
// from the backlog. Memory is bounded whatever the publish rate.
//
// Failed reads are retried in one place: the follower, with its
// exponential backoff (WithBackoff), reporting each failure through
// OnError. Two other loops exist on purpose and are not error retries: the
// Redis transport reads a page again when the topic's epoch changed
// between its two looks at it (a consistency check of a pipelined read),
// and go-redis re-sends a read on a broken connection per its MaxRetries
// (reads are idempotent; publish scripts are sent once, see
// redistransport).
package replay
