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
// with replicas if [WithReplicas] says so; [Cluster.Failover] (graceful),
// [Cluster.ForceFailover] (kill -9 of a master), [Cluster.Rejoin] and
// [Cluster.MigrateSlot] change it the way operators and crashes do, and
// wait until every node agrees again. [StartProxy] puts an in-process
// toxiproxy between a client and any address to inject network faults
// (black hole, reset, latency, bandwidth).
//
// Fixtures for process and replication faults, all on real servers:
//
//   - [Server.Pause] and [Server.Resume]: SIGSTOP and SIGCONT by PID;
//     [Server.Paused] and [Server.Running] report the process state.
//   - [StartReplica] starts a replica of a server and waits until it is in
//     sync ([Server.WaitInSync]); [Server.PauseReplication] makes it lag
//     behind acknowledged writes with its link still up, and
//     [Server.ResumeReplication] lets it catch up.
//   - [StartSentinels] starts redis-server --sentinel processes monitoring a
//     master, for redis.NewFailoverClient ([Sentinels.FailoverClient]);
//     [Sentinels.WaitFailover] waits until they have promoted a replica
//     after the master was killed or paused.
//   - [Server.SetMaxMemory] and [Server.FillMemory]: maxmemory, its policy,
//     and filling up to it.
//   - [WithAOFEverySec], [Server.MarkAOF] and [Server.CrashToMark] emulate a
//     host crash that loses the acknowledged writes of the last moments;
//     [Server.Snapshot], Kill and Restart do the same for an RDB-only server.
//
// A failover to a lagging replica:
//
//	master := redistest.Start(t)
//	replica := redistest.StartReplica(t, master)
//	sentinels := redistest.StartSentinels(t, master, 1)
//	rdb := sentinels.FailoverClient(t)
//	replica.PauseReplication(t) // writes from now on are lost by the failover
//	master.Kill(t)
//	sentinels.WaitFailover(t, master.Addr()) // == replica.Addr()
//
// redis-server must be on PATH; when it is missing the test fails with a
// message saying how to install it. Tests do not skip.
//
// All functions are safe to call from parallel tests. The methods of one
// [Server], [Cluster] or [Proxy] are safe for concurrent use.
package redistest
