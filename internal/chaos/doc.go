// Package chaos holds durabus's fault-injection, bad-input and security
// tests. It has no code of its own: everything is in its _test.go files.
//
// The chaos harness runs a steady publisher over several topics and three
// subscribers (plain, pattern, and a durable consumer in a child process)
// against a private redis-server with AOF (appendfsync always), while a fault
// schedule kills connections, restarts Redis, degrades the network through
// toxiproxy, stalls or SIGKILLs the durable subscriber, breaks the
// publisher's connection mid-batch, or trims the backlog past a stopped
// subscriber. Every acknowledged and every failed publish and every
// delivery is recorded; a checker then counts lost, unexpected, duplicated
// and reordered events per subscriber and prints one table per run.
//
// TestChaosCluster runs the same kind of history check on a Redis Cluster
// of 3 masters with a replica each (graceful and forced failover, slot
// migration under write; plain and sharded Pub/Sub): see
// cluster_faults_test.go.
//
// No fault starts before every subscriber is ready: subscribed (its bus
// Ready) and, for the durable one, its position saved in Redis (its
// checkpoint hash holds every topic). The harness waits for conditions
// with generous deadlines, never for a fixed time before asserting, so
// that it passes on a loaded 2-core machine running -race.
//
//	go test ./internal/chaos                          # bounded run (a few seconds per fault)
//	go test -v -run TestChaos ./internal/chaos -chaos.duration=50s   # make chaos
package chaos
