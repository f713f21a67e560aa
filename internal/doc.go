// Package internal holds code shared by durabus's own packages, tools and
// tests only: redisproc starts a private redis-server for the CLI and the
// examples, hashslot computes Redis Cluster hash slots (the CLI's stats,
// redistest), redistest starts private servers (standalone, AOF, ACL,
// cluster) and toxiproxy faults for tests, and chaos is the fault-injection
// suite. The measurement code of `make bench` and `durabus bench` lives in
// bench/benchkit, beside the suite (bench/peers).
package internal
