// Package redistest starts private redis-server processes for tests.
//
// Every server runs as a child process of the test binary, bound to
// 127.0.0.1 on a free port, with its data, config and log in a t.TempDir().
// It is stopped in t.Cleanup, also when the test fails or panics, and on
// Linux it is killed by the kernel if the test binary dies
// (PR_SET_PDEATHSIG). Tests never talk to a server that happens to run on
// 6379.
//
//	srv := redistest.Start(t, redistest.WithAOF())
//	rdb := srv.Client(t)
//	rdb.Set(ctx, "durabus:k", "v", 0)
//	srv.Kill(t)    // SIGKILL
//	srv.Restart(t) // same port, dir and config; data is back
//
// [StartCluster] starts a cluster of masters with all 16384 slots assigned,
// and [StartProxy] puts an in-process toxiproxy between a client and any
// address to inject network faults (black hole, reset, latency, bandwidth).
//
// redis-server must be on PATH; when it is missing the test fails with a
// message saying how to install it. Tests do not skip.
//
// All functions are safe to call from parallel tests. The methods of one
// [Server], [Cluster] or [Proxy] are safe for concurrent use.
package redistest
