package redistransport

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/transport"
)

// seekPage is the page size of Seek's forward scan.
const seekPage = 100

// readPage reads the epoch and up to count log entries from start (an
// XRANGE bound) atomically (MULTI/EXEC on the topic's slot). epoch is ""
// when the topic has no meta hash.
func (t *Transport) readPage(ctx context.Context, topic, start string, count int) (string, []redis.XMessage, error) {
	logKey, metaKey, _ := t.Keys(topic)
	var epoch *redis.StringCmd
	var xr *redis.XMessageSliceCmd
	_, err := t.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		epoch = p.HGet(ctx, metaKey, "epoch")
		xr = p.XRangeN(ctx, logKey, start, "+", int64(count))
		return nil
	})
	if err != nil && !isNil(err) {
		return "", nil, err
	}
	if err := xr.Err(); err != nil {
		return "", nil, err
	}
	e, err := epoch.Result()
	if err != nil && !isNil(err) {
		return "", nil, err
	}
	return e, xr.Val(), nil
}

// entry turns a log entry into a Delivery; ok is false for junk, which is
// counted and logged.
func (t *Transport) entry(topic, epoch string, m redis.XMessage) (transport.Delivery, bool) {
	seqText, _ := m.Values["seq"].(string)
	data, okData := m.Values["e"].(string)
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil || seq == 0 || !okData {
		t.stats.junk.Add(1)
		t.log.Warn("redistransport: skipped a backlog entry without valid seq and e fields",
			"topic", topic, "id", m.ID)
		return transport.Delivery{}, false
	}
	return transport.Delivery{
		Topic:    topic,
		Position: transport.Position{Epoch: epoch, Seq: seq, ID: m.ID},
		Data:     replyBytes(data),
	}, true
}

// Range returns up to limit events of topic after the given position (see
// transport.Transport): XRANGE (after.ID, read with the epoch in one
// MULTI/EXEC. When after is of the current epoch but has no ID, the log is
// scanned from its start for seq > after.Seq. Junk entries are skipped
// (see the package doc) without shortening the page. A limit below 1 returns
// an empty page.
func (t *Transport) Range(ctx context.Context, topic string, after transport.Position, limit int) (transport.Page, error) {
	if t.isClosed() {
		return transport.Page{}, errClosed("range")
	}
	if err := transport.ValidateTopic(topic); err != nil {
		return transport.Page{}, fmt.Errorf("redistransport: range: %w", err)
	}
	if limit < 1 {
		_, metaKey, _ := t.Keys(topic)
		epoch, err := t.rdb.HGet(ctx, metaKey, "epoch").Result()
		if isNil(err) {
			return transport.Page{}, fmt.Errorf("redistransport: range %q: %w", topic, transport.ErrUnknownTopic)
		}
		return transport.Page{Epoch: epoch}, wrapErr("range", topic, err)
	}
	cursor, minSeq := "-", uint64(0)
	if after.Epoch != "" {
		if after.ID != "" {
			cursor = "(" + after.ID
		} else {
			minSeq = after.Seq
		}
	}
	var page transport.Page
	first := true
	for {
		need := limit - len(page.Events)
		epoch, entries, err := t.readPage(ctx, topic, cursor, need)
		if err != nil {
			return transport.Page{}, wrapErr("range", topic, err)
		}
		if first {
			if epoch == "" {
				return transport.Page{}, fmt.Errorf("redistransport: range %q: %w", topic, transport.ErrUnknownTopic)
			}
			if after.Epoch != "" && epoch != after.Epoch {
				// Another epoch: read from its oldest event.
				after, cursor, minSeq = transport.Position{}, "-", 0
				continue
			}
			page.Epoch, first = epoch, false
		} else if epoch != page.Epoch {
			return page, nil // the log was reset meanwhile; the next read sees it
		}
		for _, m := range entries {
			d, ok := t.entry(topic, epoch, m)
			if ok && d.Position.Seq > minSeq {
				page.Events = append(page.Events, d)
			}
		}
		if len(entries) < need || len(page.Events) >= limit {
			return page, nil
		}
		cursor = "(" + entries[len(entries)-1].ID
	}
}

// Seek returns the position just before the first event of topic whose
// envelope "time" is at or after tm. It reads from the stream id of tm
// minus WithSeekSkew and decodes the "time" of each entry forward until one
// is recent enough; an event stored with a stream id earlier than that
// (a publisher clock more than the skew behind Redis's) is not found. The
// position returned has the event's seq-1 and the stream id just before the
// event's, so Range from it starts exactly at the event. When no event is
// that recent, Seek returns Head.
func (t *Transport) Seek(ctx context.Context, topic string, tm time.Time) (transport.Position, error) {
	if t.isClosed() {
		return transport.Position{}, errClosed("seek")
	}
	if err := transport.ValidateTopic(topic); err != nil {
		return transport.Position{}, fmt.Errorf("redistransport: seek: %w", err)
	}
	ms := tm.Add(-t.cfg.seekSkew).UnixMilli()
	cursor := "0"
	if ms > 0 {
		cursor = strconv.FormatInt(ms, 10)
	}
	for {
		epoch, entries, err := t.readPage(ctx, topic, cursor, seekPage)
		if err != nil {
			return transport.Position{}, wrapErr("seek", topic, err)
		}
		if epoch == "" {
			return transport.Position{}, fmt.Errorf("redistransport: seek %q: %w", topic, transport.ErrUnknownTopic)
		}
		for _, m := range entries {
			d, ok := t.entry(topic, epoch, m)
			if !ok {
				continue
			}
			var env struct {
				Time time.Time `json:"time"`
			}
			if json.Unmarshal(d.Data, &env) != nil || env.Time.IsZero() {
				t.log.Warn("redistransport: seek skipped an entry without a readable time", "topic", topic, "id", m.ID)
				continue
			}
			if !env.Time.Before(tm) {
				return transport.Position{Epoch: epoch, Seq: d.Position.Seq - 1, ID: prevID(m.ID)}, nil
			}
		}
		if len(entries) < seekPage {
			return t.Head(ctx, topic)
		}
		cursor = "(" + entries[len(entries)-1].ID
	}
}

// Head returns the epoch and seq from the topic's meta hash and the stream
// id of the log's last entry, read in one MULTI/EXEC. A topic without a meta
// hash or without a log gives transport.ErrUnknownTopic.
func (t *Transport) Head(ctx context.Context, topic string) (transport.Position, error) {
	if t.isClosed() {
		return transport.Position{}, errClosed("head")
	}
	if err := transport.ValidateTopic(topic); err != nil {
		return transport.Position{}, fmt.Errorf("redistransport: head: %w", err)
	}
	logKey, metaKey, _ := t.Keys(topic)
	var meta *redis.SliceCmd
	var exists *redis.IntCmd
	var last *redis.XMessageSliceCmd
	_, err := t.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		meta = p.HMGet(ctx, metaKey, "epoch", "seq")
		exists = p.Exists(ctx, logKey)
		last = p.XRevRangeN(ctx, logKey, "+", "-", 1)
		return nil
	})
	if err != nil {
		return transport.Position{}, wrapErr("head", topic, err)
	}
	vals := meta.Val()
	epoch, _ := vals[0].(string)
	seqText, _ := vals[1].(string)
	if epoch == "" || exists.Val() == 0 {
		return transport.Position{}, fmt.Errorf("redistransport: head %q: %w", topic, transport.ErrUnknownTopic)
	}
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil {
		return transport.Position{}, fmt.Errorf("redistransport: head %q: meta seq %q: %w", topic, seqText, err)
	}
	pos := transport.Position{Epoch: epoch, Seq: seq}
	if l := last.Val(); len(l) > 0 {
		pos.ID = l[0].ID
	}
	return pos, nil
}

// Topics lists the topics in ns:topics whose names match the glob pattern
// ("" or "*" for all), sorted by name. A topic is listed from its first
// publish until its entry is removed by hand (ZREM).
func (t *Transport) Topics(ctx context.Context, pattern string) ([]string, error) {
	if t.isClosed() {
		return nil, errClosed("topics")
	}
	if pattern == "" {
		pattern = "*"
	}
	if err := transport.ValidatePattern(pattern); err != nil {
		return nil, fmt.Errorf("redistransport: topics: %w", err)
	}
	all, err := t.rdb.ZRange(ctx, t.topicsKey, 0, -1).Result()
	if err != nil {
		return nil, wrapErr("topics", "", err)
	}
	names := all[:0]
	for _, name := range all {
		if transport.Match(pattern, name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names, nil
}

// SaveCheckpoints stores the positions of consumer in the hash
// ns:consumer:<consumer> (one HSET), replacing earlier ones for the same
// topics.
func (t *Transport) SaveCheckpoints(ctx context.Context, consumer string, cps map[string]transport.Position) error {
	if t.isClosed() {
		return errClosed("save checkpoints")
	}
	if consumer == "" {
		return fmt.Errorf("redistransport: save checkpoints: empty consumer name")
	}
	if len(cps) == 0 {
		return nil
	}
	vals := make([]any, 0, 2*len(cps))
	for topic, p := range cps {
		if err := transport.ValidateTopic(topic); err != nil {
			return fmt.Errorf("redistransport: save checkpoints of %q: %w", consumer, err)
		}
		vals = append(vals, topic, p.String())
	}
	return wrapErr("save checkpoints of", consumer, t.rdb.HSet(ctx, t.consumerBase+consumer, vals...).Err())
}

// LoadCheckpoints returns the saved positions of consumer (HGETALL); an
// empty map when it has none.
func (t *Transport) LoadCheckpoints(ctx context.Context, consumer string) (map[string]transport.Position, error) {
	if t.isClosed() {
		return nil, errClosed("load checkpoints")
	}
	m, err := t.rdb.HGetAll(ctx, t.consumerBase+consumer).Result()
	if err != nil {
		return nil, wrapErr("load checkpoints of", consumer, err)
	}
	out := make(map[string]transport.Position, len(m))
	for topic, s := range m {
		p, err := transport.ParsePosition(s)
		if err != nil {
			return nil, fmt.Errorf("redistransport: load checkpoints of %q, topic %q: %w", consumer, topic, err)
		}
		out[topic] = p
	}
	return out, nil
}
