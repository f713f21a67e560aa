// Package examples holds runnable programs, one folder each, every one a
// package main with a smoke test:
//
//   - chat: a chat room where late joiners get the history and returning
//     users get what they missed
//   - orders: three replicas of one service, as three processes, sharing a
//     partitioned topic in a consumer group; one is killed, the others
//     take over, and the order of every order's events is checked
//   - services: order, billing and notification services on durable
//     consumers
//   - worker: a job worker that survives kill -9 and resumes from its
//     checkpoint
//   - patterns: one handler for every "user:*:notifications" topic
//   - monitor: live subscription stats and health while a publisher runs
//   - tracing: OpenTelemetry traces across services
//   - quickstart: the README's Quick start, on the Redis at $REDIS_ADDR
//     (default 127.0.0.1:6379); its test keeps the README's copy equal
//
// Run one with `go run ./examples/NAME` (a private redis-server is started
// for the run) or `go run ./examples/NAME --redis redis://HOST:6379`.
package examples
