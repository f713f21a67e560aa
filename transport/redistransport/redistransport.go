// Package redistransport is the Redis implementation of transport.Transport,
// on a caller-provided redis.UniversalClient (standalone, Sentinel or
// Cluster) that it never closes. Redis 6.2 or newer is required (7.0 for
// WithShardedPubSub).
//
// # Redis layout
//
// These names are stable: changing one is a data migration. ns is the
// namespace (WithNamespace, default "durabus"), T a topic name. Every key and
// the channel of a topic carry the hash tag {T}, so that the publish script
// touches one slot and the layout works unchanged on Redis Cluster.
//
//	ns:{T}:log         Stream   the backlog; entry id assigned by Redis (XADD *),
//	                            fields "seq" (decimal) and "e" (envelope JSON);
//	                            a rollback marker has "seq" (the meta seq when
//	                            it was written) and "rb" ("<epoch> <from> <to>")
//	                            instead of "e"; its consumer groups are its
//	                            lineage record (see LogEpochs; nothing reads
//	                            through them): "durabus:lineage" and
//	                            "durabus:epoch:<epoch>", made with the key,
//	                            plus one "durabus:epoch:<epoch>" per epoch made
//	                            over it later (at most 1024, then dropped)
//	ns:{T}:meta        Hash     "epoch" (made when the log is (re)created),
//	                            "seq" (the last sequence number handed out)
//	ns:{T}:idem:<id>   String   "epoch seq streamid" of the first publish of
//	                            event <id>; only with WithIdempotency, expires
//	                            after the window
//	ns:{T}             channel  live frames (PUBLISH, or SPUBLISH when sharded)
//	ns:{T}:partitions  String   N, the partition count of a partitioned topic T
//	                            (see partitions.go); T's events are in the
//	                            topics T:p0 … T:p<N-1>, each with its own tag
//	ns:topics          ZSet     topic -> last publish time, Unix ms (client clock);
//	                            written beside the script (another slot)
//	ns:consumer:<name> Hash     topic -> Position.String() of a durable consumer
//	ns:owner:{ns:consumer:<name>}
//	                   Hash     its record and lease, in the checkpoint hash's
//	                            slot (see consumer.go): "name", "created",
//	                            "holder", "until", "token", "t:<topic>"
//	ns:group:{<name>}  Hash     a consumer group's members (see group.go):
//	                            id -> "<until ms> <seen ms> <member JSON>"
//	ns:groups          ZSet     group name -> last heartbeat (Redis ms)
//
// # Live frames
//
// One PUBLISH carries one or more consecutive events of one topic:
//
//	v1 <epoch> <first-seq> <count>\n
//	<stream-id> <length>\n<length bytes of envelope>     (count times)
//
// Event i (from 0) has seq first-seq+i. The header is ASCII, the envelope is
// copied as is. A frame parses without JSON, and the envelope is copied once
// (out of the string go-redis returns). The script starts a new frame
// rather than let one pass 8 000 bytes of records (an event larger than that
// has a frame of its own): a batch never makes one huge message, and Lua
// joins each frame in its fixed-size string buffer.
//
// # Epochs and a lost meta hash
//
// The epoch is hex(Redis TIME seconds) followed by 8 random hex digits from
// the client. When the meta hash is missing while the log survives (it was
// evicted, or deleted by hand), the script makes a new epoch and continues
// the sequence after the seq of the log's last entry: no seq is handed out
// twice under one epoch, and followers see the epoch change and resync.
//
// # Junk in the backlog
//
// A log entry without a decimal "seq" and an "e" field, that is not a
// rollback marker either (a decimal "seq" and an "rb" field that parses),
// was written by something other than durabus and has no position: Range
// and Seek skip it, count it in Stats().JunkEntries and log it
// (WithLogger). Range returns rollback markers (transport.Delivery.Rollback);
// Seek steps over them. A live frame that does not parse becomes a
// transport.Malformed event and is counted; the subscription goes on.
//
// # Reads without transactions
//
// Range, Seek and Head read a topic's meta hash and log in one pipeline
// that reads the meta hash again at its end, and run again when it changed,
// rather than in MULTI/EXEC: Redis 7 refuses every transaction with
// EXECABORT once it is at maxmemory under noeviction, while plain reads still
// work, and a consumer must be able to catch up then.
package redistransport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/transport"
)

var _ transport.Transport = (*Transport)(nil)

// Transport is the Redis transport. It is safe for concurrent use. Close
// ends its subscriptions but never closes the client passed to New.
type Transport struct {
	rdb     redis.UniversalClient
	cluster *redis.ClusterClient // rdb when it is a cluster client, else nil
	cfg     config
	log     *slog.Logger

	topicsKey    string
	consumerBase string

	topics    sync.Map // topic -> *topicState (publish.go)
	nTopics   atomic.Int64
	maxLenArg any // cfg.maxLen, boxed once for the scripts' arguments

	w writer // coalesces concurrent Publish calls (coalesce.go)

	mu     sync.Mutex
	closed bool
	subs   map[*subscription]struct{}

	stopCheck context.CancelFunc // ends the memory policy check (Close)
	checks    sync.WaitGroup     // the memory policy check's goroutine

	stats counters
}

type counters struct {
	malformed, dropped, junk, reconnects, stalls atomic.Uint64
}

// Stats are cumulative counters of a Transport, for metrics.
type Stats struct {
	// MalformedFrames counts live messages on durabus channels that did not
	// parse (delivered as transport.Malformed events, or dropped).
	MalformedFrames uint64
	// DroppedFrames counts live events not delivered because a receiver
	// was too slow (each signalled by transport.Dropped).
	DroppedFrames uint64
	// JunkEntries counts backlog entries skipped because they have no valid
	// "seq" or "e" field. An entry read twice is counted twice.
	JunkEntries uint64
	// Reconnects counts Reconnected signals; Stalls counts Stalled signals.
	Reconnects, Stalls uint64
}

// Stats returns the transport's counters. Safe for concurrent use.
func (t *Transport) Stats() Stats {
	return Stats{
		MalformedFrames: t.stats.malformed.Load(),
		DroppedFrames:   t.stats.dropped.Load(),
		JunkEntries:     t.stats.junk.Load(),
		Reconnects:      t.stats.reconnects.Load(),
		Stalls:          t.stats.stalls.Load(),
	}
}

// New returns a transport on rdb. It does not wait for Redis: the publish
// script is loaded on first use, and the only other I/O is one background
// CONFIG GET maxmemory-policy (bounded by policyCheckTimeout, ended by
// Close), which logs a warning when the policy lets Redis evict keys (see
// checkPolicy). Invalid options are all reported in one error wrapping
// transport.ErrInvalidOption.
func New(rdb redis.UniversalClient, opts ...Option) (*Transport, error) {
	if rdb == nil {
		return nil, fmt.Errorf("redistransport: %w: nil redis client", transport.ErrInvalidOption)
	}
	cfg := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log := cfg.logger
	if log == nil {
		log = slog.Default()
	}
	cluster, _ := rdb.(*redis.ClusterClient)
	t := &Transport{
		rdb:          rdb,
		cluster:      cluster,
		cfg:          cfg,
		log:          log,
		topicsKey:    cfg.namespace + ":topics",
		consumerBase: cfg.namespace + ":consumer:",
		maxLenArg:    cfg.maxLen,
		subs:         make(map[*subscription]struct{}),
	}
	ctx, cancel := context.WithTimeout(context.Background(), policyCheckTimeout)
	t.stopCheck = cancel
	t.checks.Add(1)
	go func() {
		defer t.checks.Done()
		defer cancel()
		t.checkPolicy(ctx)
	}()
	return t, nil
}

// policyCheckTimeout bounds the memory policy check New starts. (go-redis
// gives up a read only after its ReadTimeout, 3 s by default, unless the
// client sets ContextTimeoutEnabled: Close waits for that much at most.)
const policyCheckTimeout = 2 * time.Second

// checkPolicy warns, through the transport's logger, when Redis's
// maxmemory-policy is not noeviction: once maxmemory is reached, Redis then
// evicts keys rather than refuse writes. It says nothing when the policy
// cannot be read (a user without the right to CONFIG GET, NOPERM; a proxy or
// managed Redis that hides CONFIG; any other error or the timeout): the check
// is advice, never a condition to run.
func (t *Transport) checkPolicy(ctx context.Context) {
	m, err := t.rdb.ConfigGet(ctx, "maxmemory-policy").Result()
	policy := m["maxmemory-policy"]
	if err != nil || policy == "" || policy == "noeviction" {
		return
	}
	var risk string
	if strings.HasPrefix(policy, "volatile-") {
		risk = "only keys with a TTL are evicted: durabus's logs, meta hashes and checkpoints have none, " +
			"but idempotency keys (WithIdempotency) can go before their window ends, and a retried publish is then written twice"
	} else {
		risk = "Redis can evict a topic's log (its events are lost), its meta hash (a new epoch: subscribers resync " +
			"and report the change), idempotency keys, and durable consumers' checkpoints (a consumer restarts from its start position)"
	}
	t.log.Warn("redistransport: Redis maxmemory-policy is "+policy+", not noeviction; at maxmemory "+risk+
		"; see docs/operations.md (Memory: maxmemory-policy)", "maxmemory-policy", policy)
}

// MaxSize returns the largest encoded event (the whole envelope) that
// Publish accepts, in bytes (WithMaxSize).
func (t *Transport) MaxSize() int { return t.cfg.maxSize }

// Keys returns the Redis key of topic's log, its meta hash and its channel
// (see the package doc). For operations and tests.
func (t *Transport) Keys(topic string) (log, meta, channel string) {
	ch := t.channel(topic)
	return ch + ":log", ch + ":meta", ch
}

func (t *Transport) channel(topic string) string {
	return t.cfg.namespace + ":{" + topic + "}"
}

// topicOf returns the topic of one of our channels.
func (t *Transport) topicOf(channel string) (string, bool) {
	ns := t.cfg.namespace
	if len(channel) < len(ns)+4 || !strings.HasPrefix(channel, ns) || channel[len(ns)] != ':' ||
		channel[len(ns)+1] != '{' || channel[len(channel)-1] != '}' {
		return "", false
	}
	topic := channel[len(ns)+2 : len(channel)-1]
	if transport.ValidateTopic(topic) != nil {
		return "", false
	}
	return topic, true
}

func (t *Transport) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

func errClosed(op string) error { return fmt.Errorf("redistransport: %s: %w", op, transport.ErrClosed) }

// Close ends every subscription (their Err becomes transport.ErrClosed) and
// the memory policy check of New, and waits for their goroutines. After
// Close every method returns an error wrapping transport.ErrClosed, Close
// included. The Redis client stays open.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return errClosed("close")
	}
	t.closed = true
	t.stopCheck()
	subs := make([]*subscription, 0, len(t.subs))
	for s := range t.subs {
		subs = append(subs, s)
	}
	t.mu.Unlock()
	for _, s := range subs {
		s.shutdown(transport.ErrClosed)
	}
	for _, s := range subs {
		s.wg.Wait()
	}
	t.checks.Wait()
	t.waitPublishes()
	return nil
}

// aclHint ends the message of an error caused by a missing ACL right.
const aclHint = " (the Redis user lacks a right durabus needs; see the ACL line in docs/operations.md)"

// wrapErr adds context, and a hint when Redis refused for lack of rights
// (NOPERM, or a command refused inside one of durabus's scripts).
func wrapErr(op, topic string, err error) error {
	if err == nil {
		return nil
	}
	var hint string
	if strings.HasPrefix(err.Error(), "NOPERM") {
		hint = aclHint
	} else if cmd, ok := scriptDenied(err); ok {
		err = &scriptPermError{cmd: cmd, err: err}
		hint = aclHint
	} else if addr, ok := dialFailed(err); ok {
		err = fmt.Errorf("cannot reach Redis at %s: %w", addr, err)
	}
	if topic != "" {
		return fmt.Errorf("redistransport: %s %q: %w%s", op, topic, err, hint)
	}
	return fmt.Errorf("redistransport: %s: %w%s", op, err, hint)
}

func isNil(err error) bool { return errors.Is(err, redis.Nil) }

// refreshSlots asks a cluster client to reload its slot map after a
// command failed without a reply from Redis (a refused dial, a broken
// connection, a timeout) or with CLUSTERDOWN, or after a MOVED that
// go-redis does not follow itself (on a Pub/Sub connection). go-redis
// (checked against v9.23.0) reloads the map only after a MOVED or ASK reply
// to a command, or once it is older than ClusterStateReloadInterval (60 s
// by default): after a master is killed and its replica promoted, it goes
// on dialling the dead master for up to a minute, and should that process
// come back meanwhile, it reads and writes the node's old data while the
// node still takes itself for the master (both seen in TestChaosCluster's
// forced failover). go-redis runs the reload in the background, one at a
// time.
func (t *Transport) refreshSlots(err error) {
	if t.cluster == nil || err == nil || isNil(err) || errors.Is(err, context.Canceled) || errors.Is(err, redis.ErrClosed) {
		return
	}
	var rerr redis.Error
	if errors.As(err, &rerr) && !strings.HasPrefix(rerr.Error(), "CLUSTERDOWN") && !strings.HasPrefix(rerr.Error(), "MOVED ") {
		return // the node answered for the slot
	}
	t.cluster.ReloadState(context.Background())
}

// scriptPermError is a command refused by the ACL inside one of durabus's
// scripts. Redis 7 reports it as "ERR The user executing the script can't
// run this command or subcommand script: <sha>, on @user_script:<line>",
// without the command's name; the message names it.
type scriptPermError struct {
	cmd string // "XADD", "PUBLISH or SPUBLISH", or "" when not known
	err error
}

func (e *scriptPermError) Error() string {
	if e.cmd == "" {
		return "NOPERM the Redis user may not run a command of a durabus script: " + e.err.Error()
	}
	return "NOPERM the Redis user may not run " + e.cmd + " in a durabus script (add +" +
		strings.ToLower(strings.ReplaceAll(e.cmd, " or ", " +")) + " to its ACL)"
}

func (e *scriptPermError) Unwrap() error { return e.err }

// scriptDeniedRE matches Redis 7's reply to a command refused by the ACL
// inside a script.
var scriptDeniedRE = regexp.MustCompile(`can't run this command or subcommand script: ([0-9a-f]{40}), on @user_script:(\d+)`)

// scriptCallRE finds the command of a redis.call on a line of a script.
var scriptCallRE = regexp.MustCompile(`redis\.call\('([A-Za-z]+)'|redis\.call\((ARGV\[\d+\])`)

// scriptSources are durabus's scripts by SHA1, for scriptDenied.
var scriptSources = func() map[string]string {
	m := map[string]string{}
	for _, src := range []string{publishScript, singleScript, rollbackScript,
		claimScript, renewScript, releaseScript, saveScript, heartbeatScript} {
		m[scriptSHA(src)] = src
		m[scriptSHA(allowOOM+src)] = allowOOM + src
	}
	return m
}()

// scriptDenied reports the command that the ACL refused inside one of
// durabus's scripts, read from the script line the error names. A command
// given as an argument (the frame's PUBLISH) is "PUBLISH or SPUBLISH"; an
// unknown script or line gives "".
func scriptDenied(err error) (string, bool) {
	m := scriptDeniedRE.FindStringSubmatch(err.Error())
	if m == nil {
		return "", false
	}
	src, ok := scriptSources[m[1]]
	line, _ := strconv.Atoi(m[2])
	lines := strings.Split(src, "\n")
	if !ok || line < 1 || line > len(lines) {
		return "", true
	}
	c := scriptCallRE.FindStringSubmatch(lines[line-1])
	switch {
	case c == nil:
		return "", true
	case c[1] != "":
		return strings.ToUpper(c[1]), true
	}
	return "PUBLISH or SPUBLISH", true
}

// dialFailed reports the address of a failed connection attempt.
func dialFailed(err error) (string, bool) {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		if op.Addr != nil {
			return op.Addr.String(), true
		}
		return "?", true
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns.Name, true
	}
	return "", false
}

// Explain adds to err, an error of a context that ended while waiting on
// the transport, "cannot reach Redis at <addr>" when the client holds no
// connection to Redis; other errors are returned as they are. The bus
// calls it when Ready's ctx ends; Publish and PublishBatch apply it to
// their own errors.
func (t *Transport) Explain(err error) error { return t.unreachable(err) }

// unreachable adds "cannot reach Redis at <addr>" to err, an error of ctx,
// when the client holds no connection: a publish against a Redis that is
// down ends with the caller's deadline, and says why.
func (t *Transport) unreachable(err error) error {
	if err == nil || !(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) ||
		strings.Contains(err.Error(), "cannot reach Redis") {
		return err
	}
	if st := t.rdb.PoolStats(); st == nil || st.TotalConns > 0 {
		return err
	}
	return fmt.Errorf("%w (cannot reach Redis at %s: no connection could be opened)", err, serverAddr(t.rdb))
}

// serverAddr names the server(s) of rdb for messages.
func serverAddr(rdb redis.UniversalClient) string {
	switch c := rdb.(type) {
	case *redis.Client:
		return c.Options().Addr
	case *redis.ClusterClient:
		return strings.Join(c.Options().Addrs, ",")
	case *redis.Ring:
		addrs := make([]string, 0, len(c.Options().Addrs))
		for _, a := range c.Options().Addrs {
			addrs = append(addrs, a)
		}
		slices.Sort(addrs)
		return strings.Join(addrs, ",")
	}
	return "?"
}
