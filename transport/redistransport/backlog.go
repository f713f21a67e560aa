package redistransport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/transport"
)

// Page sizes of Seek's forward scan: the first page is small (the event
// sought is often close to the start), the next ones double up to the last.
const (
	seekPage    = 100
	seekPageMax = 1600
)

// maxReadAttempts bounds how often a backlog read is run again because the
// topic's epoch changed while it ran (or, for Head, its seq did in a way
// the read cannot place).
const maxReadAttempts = 16

// errChurn says that every attempt of a read saw the topic change under it.
var errChurn = errors.New("the topic's meta hash changed during every attempt; try again")

// readPage reads the epoch and up to count log entries from start (an XRANGE
// bound), as one consistent snapshot, without MULTI/EXEC (which Redis 7
// refuses with EXECABORT at maxmemory under noeviction): one pipeline
// HGET epoch, EXISTS log, XRANGE, HGET epoch, run again when the two epochs
// differ. An epoch is made once, with a random part, whenever the meta hash
// is (re)created, so equal epochs before and after mean the entries are the
// log of that epoch. epoch is "" when the topic has no meta hash; hasLog is
// false when its log does not exist.
func (t *Transport) readPage(ctx context.Context, topic, start string, count int) (epoch string, hasLog bool, entries []redis.XMessage, err error) {
	logKey, metaKey, _ := t.Keys(topic)
	for range maxReadAttempts {
		p := t.rdb.Pipeline()
		before := p.HGet(ctx, metaKey, "epoch")
		exists := p.Exists(ctx, logKey)
		xr := p.XRangeN(ctx, logKey, start, "+", int64(count))
		after := p.HGet(ctx, metaKey, "epoch")
		execRead(ctx, p)
		e1, err := before.Result()
		if err != nil && !isNil(err) {
			return "", false, nil, err
		}
		e2, err := after.Result()
		if err != nil && !isNil(err) {
			return "", false, nil, err
		}
		if err := exists.Err(); err != nil {
			return "", false, nil, err
		}
		if err := xr.Err(); err != nil {
			return "", false, nil, err
		}
		if e1 == e2 {
			return e1, exists.Val() > 0, xr.Val(), nil
		}
	}
	return "", false, nil, errChurn
}

// execRead sends a pipeline of reads. Each command carries its own error;
// when the pipeline could not be sent at all and no command got one, every
// command is given the pipeline's.
func execRead(ctx context.Context, p redis.Pipeliner) {
	cmds, err := p.Exec(ctx)
	if err == nil || isNil(err) {
		return
	}
	for _, c := range cmds {
		if c.Err() != nil {
			return
		}
	}
	for _, c := range cmds {
		c.SetErr(err)
	}
}

// entryKind says what a log entry is.
type entryKind uint8

const (
	junkEntry   entryKind = iota // neither an event nor a marker: skipped
	eventEntry                   // fields seq and e
	markerEntry                  // fields seq and rb, no e: a rollback marker
)

// entry turns a log entry into a Delivery: an event (fields seq >= 1 and e)
// or a rollback marker (fields seq and rb = "<epoch> <from> <to>", no e).
// Anything else is junk, which is counted and logged.
//
// An event's Data is left nil and its envelope returned apart, as go-redis
// gave it: the caller copies it where the receiver will own it (Range: one
// allocation per page, copyData) or only reads it (Seek).
func (t *Transport) entry(topic, epoch string, m redis.XMessage) (transport.Delivery, string, entryKind) {
	seqText, _ := m.Values["seq"].(string)
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err == nil {
		if data, ok := m.Values["e"].(string); ok {
			if seq > 0 {
				return transport.Delivery{
					Topic:    topic,
					Position: transport.Position{Epoch: epoch, Seq: seq, ID: m.ID},
				}, data, eventEntry
			}
		} else if rb, ok := m.Values["rb"].(string); ok {
			if r, ok := parseRollback(rb); ok {
				return transport.Delivery{
					Topic:    topic,
					Position: transport.Position{Epoch: epoch, Seq: seq, ID: m.ID},
					Rollback: r,
				}, "", markerEntry
			}
		}
	}
	t.stats.junk.Add(1)
	t.log.Warn("redistransport: skipped a backlog entry without valid seq and e (or rb) fields",
		"topic", topic, "id", m.ID)
	return transport.Delivery{}, "", junkEntry
}

// copyData gives the events of ds (their envelopes in datas, in order)
// copies of their envelopes in one allocation: each Data is its own
// capped slice of it, which the receiver owns and may change or append to
// without touching its neighbours (the allocation lives as long as one of
// them is kept, as a live frame's does).
func copyData(ds []transport.Delivery, datas []string) {
	n := 0
	for _, s := range datas {
		n += len(s)
	}
	buf := make([]byte, 0, n)
	for i, s := range datas {
		if ds[i].Rollback != nil {
			continue
		}
		off := len(buf)
		buf = append(buf, s...)
		ds[i].Data = buf[off:len(buf):len(buf)]
	}
}

// parseRollback parses a marker's rb field, "<epoch> <from> <to>" with
// 1 <= from <= to.
func parseRollback(rb string) (*transport.Rollback, bool) {
	f := strings.Fields(rb)
	if len(f) != 3 {
		return nil, false
	}
	from, err1 := strconv.ParseUint(f[1], 10, 64)
	to, err2 := strconv.ParseUint(f[2], 10, 64)
	if err1 != nil || err2 != nil || from == 0 || to < from {
		return nil, false
	}
	return &transport.Rollback{Epoch: f[0], From: from, To: to}, true
}

// Range returns up to limit events of topic after the given position (see
// transport.Transport): XRANGE (after.ID, read with the epoch in one
// consistent pipeline (readPage). When after is of the current epoch but has
// no ID, the log is scanned from its start for seq > after.Seq (markers:
// seq >= after.Seq). Junk entries are skipped (see the package doc) without
// shortening the page. Rollback markers are returned as Deliveries with
// Rollback set and count towards limit. A limit below 1 returns an empty
// page.
//
// A topic without a meta hash, or whose log does not exist (deleted or
// evicted while its meta hash stayed), gives transport.ErrUnknownTopic, as
// Head does.
func (t *Transport) Range(ctx context.Context, topic string, after transport.Position, limit int) (transport.Page, error) {
	if t.isClosed() {
		return transport.Page{}, errClosed("range")
	}
	if err := transport.ValidateTopic(topic); err != nil {
		return transport.Page{}, fmt.Errorf("redistransport: range: %w", err)
	}
	unknown := func() (transport.Page, error) {
		return transport.Page{}, fmt.Errorf("redistransport: range %q: %w", topic, transport.ErrUnknownTopic)
	}
	if limit < 1 {
		epoch, hasLog, _, err := t.readPage(ctx, topic, "+", 1)
		if err != nil {
			return transport.Page{}, wrapErr("range", topic, err)
		}
		if epoch == "" || !hasLog {
			return unknown()
		}
		return transport.Page{Epoch: epoch}, nil
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
	var datas []string // the envelopes of the events read, until copyData copies them
	first := true
	for {
		need := limit - len(page.Events)
		epoch, hasLog, entries, err := t.readPage(ctx, topic, cursor, need)
		if err != nil {
			t.refreshSlots(err)
			return transport.Page{}, wrapErr("range", topic, err)
		}
		if first {
			if epoch == "" || !hasLog {
				return unknown()
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
		if page.Events == nil && len(entries) > 0 {
			// Sized once: a page grown by append reallocates and copies
			// its Deliveries (88 bytes each, with pointers) a dozen
			// times on the way to 1 024.
			page.Events = make([]transport.Delivery, 0, len(entries))
		}
		start := len(page.Events)
		if cap(datas) < len(entries) {
			datas = make([]string, 0, len(entries))
		}
		datas = datas[:0]
		for _, m := range entries {
			switch d, data, kind := t.entry(topic, epoch, m); kind {
			case eventEntry:
				if d.Position.Seq > minSeq {
					page.Events = append(page.Events, d)
					datas = append(datas, data)
				}
			case markerEntry:
				if d.Position.Seq >= minSeq {
					page.Events = append(page.Events, d)
					datas = append(datas, "")
				}
			}
		}
		copyData(page.Events[start:], datas)
		if len(entries) < need || len(page.Events) >= limit {
			return page, nil
		}
		cursor = "(" + entries[len(entries)-1].ID
	}
}

// Seek returns the position just before the first event of topic, in log
// order, whose envelope "time" is at or after tm, so that Range from it
// starts exactly at that event (seq-1 and the stream id just before the
// event's); when there is none, it returns Head.
//
// It scans forward from the stream id of tm minus WithSeekSkew (Redis's
// clock) and decodes the "time" of each event; rollback markers, junk and
// events without a readable time are skipped. The result is exact when no
// publisher's clock was ahead of Redis's by more than the skew when it
// published: an event whose envelope time is at or after tm then has a
// stream id at or after tm minus the skew. Publisher clocks behind Redis's
// need no allowance, whatever the lag (the scan only reads further). Events
// from a publisher ahead by more than the skew whose stream id is earlier
// than tm minus the skew are not found (Range from the result starts after
// them).
func (t *Transport) Seek(ctx context.Context, topic string, tm time.Time) (transport.Position, error) {
	if t.isClosed() {
		return transport.Position{}, errClosed("seek")
	}
	if err := transport.ValidateTopic(topic); err != nil {
		return transport.Position{}, fmt.Errorf("redistransport: seek: %w", err)
	}
	start := "-"
	if ms := tm.Add(-t.cfg.seekSkew).UnixMilli(); ms > 0 {
		start = strconv.FormatInt(ms, 10)
	}
	for range maxReadAttempts {
		pos, done, err := t.seek(ctx, topic, tm, start)
		if done || err != nil {
			return pos, err
		}
	}
	return transport.Position{}, wrapErr("seek", topic, errChurn)
}

// seek is one scan of Seek from start. done is false when the topic's epoch
// changed between two pages: the scan must start over.
func (t *Transport) seek(ctx context.Context, topic string, tm time.Time, start string) (pos transport.Position, done bool, err error) {
	cursor, first, count := start, "", seekPage
	for {
		epoch, hasLog, entries, err := t.readPage(ctx, topic, cursor, count)
		if err != nil {
			return transport.Position{}, true, wrapErr("seek", topic, err)
		}
		if epoch == "" || !hasLog {
			return transport.Position{}, true, fmt.Errorf("redistransport: seek %q: %w", topic, transport.ErrUnknownTopic)
		}
		if first == "" {
			first = epoch
		} else if epoch != first {
			return transport.Position{}, false, nil
		}
		for _, m := range entries {
			d, data, kind := t.entry(topic, epoch, m)
			if kind != eventEntry {
				continue
			}
			var env struct {
				Time time.Time `json:"time"`
			}
			if json.Unmarshal([]byte(data), &env) != nil || env.Time.IsZero() {
				t.log.Warn("redistransport: seek skipped an entry without a readable time", "topic", topic, "id", m.ID)
				continue
			}
			if !env.Time.Before(tm) {
				return transport.Position{Epoch: epoch, Seq: d.Position.Seq - 1, ID: prevID(m.ID)}, true, nil
			}
		}
		if len(entries) < count {
			pos, err := t.Head(ctx, topic)
			if err == nil && pos.Epoch != first {
				return transport.Position{}, false, nil
			}
			return pos, true, err
		}
		cursor, count = "("+entries[len(entries)-1].ID, min(2*count, seekPageMax)
	}
}

// LogEpochs reads the lineage record of the topic's log (see xaddLua): the
// consumer groups durabus:epoch:<epoch>, complete when the group
// durabus:lineage is there too. An ACL that refuses XINFO GROUPS gives an
// incomplete record, not an error.
func (t *Transport) LogEpochs(ctx context.Context, topic string) ([]string, bool, error) {
	if t.isClosed() {
		return nil, false, errClosed("log epochs")
	}
	if err := transport.ValidateTopic(topic); err != nil {
		return nil, false, fmt.Errorf("redistransport: log epochs: %w", err)
	}
	logKey, _, _ := t.Keys(topic)
	groups, err := t.rdb.XInfoGroups(ctx, logKey).Result()
	if err != nil {
		if strings.Contains(err.Error(), "no such key") {
			return nil, false, fmt.Errorf("redistransport: log epochs %q: %w", topic, transport.ErrUnknownTopic)
		}
		if strings.HasPrefix(err.Error(), "NOPERM") {
			return nil, false, nil // an ACL without XINFO: unknown, as a log without a record
		}
		return nil, false, wrapErr("log epochs", topic, err)
	}
	var epochs []string
	complete := false
	for _, g := range groups {
		if e, ok := strings.CutPrefix(g.Name, "durabus:epoch:"); ok {
			epochs = append(epochs, e)
		} else if g.Name == "durabus:lineage" {
			complete = true
		}
	}
	return epochs, complete, nil
}

// Head returns the epoch and seq from the topic's meta hash and the stream
// id of the log's last entry, as one consistent snapshot without MULTI/EXEC:
// one pipeline HMGET epoch seq, EXISTS log, XREVRANGE COUNT 1, HMGET epoch
// seq. When the meta hash changed between the two HMGETs, the read runs
// again, unless only the seq moved and the last entry's seq lies between the
// two (publishes ran meanwhile): the head is then that entry. A topic
// without a log gives a *transport.NoLogError (with what its meta hash
// says), one without a meta hash transport.ErrUnknownTopic.
func (t *Transport) Head(ctx context.Context, topic string) (transport.Position, error) {
	if t.isClosed() {
		return transport.Position{}, errClosed("head")
	}
	if err := transport.ValidateTopic(topic); err != nil {
		return transport.Position{}, fmt.Errorf("redistransport: head: %w", err)
	}
	logKey, metaKey, _ := t.Keys(topic)
	for range maxReadAttempts {
		p := t.rdb.Pipeline()
		before := p.HMGet(ctx, metaKey, "epoch", "seq")
		exists := p.Exists(ctx, logKey)
		last := p.XRevRangeN(ctx, logKey, "+", "-", 1)
		after := p.HMGet(ctx, metaKey, "epoch", "seq")
		execRead(ctx, p)
		for _, c := range []redis.Cmder{before, exists, last, after} {
			if err := c.Err(); err != nil {
				t.refreshSlots(err)
				return transport.Position{}, wrapErr("head", topic, err)
			}
		}
		epoch, seqText := metaFields(before.Val())
		epoch2, seqText2 := metaFields(after.Val())
		if epoch != epoch2 {
			continue
		}
		if exists.Val() == 0 {
			gone := &transport.NoLogError{Topic: topic}
			if seq, err := strconv.ParseUint(seqText, 10, 64); err == nil && epoch != "" {
				gone.Meta = transport.Position{Epoch: epoch, Seq: seq}
			}
			return transport.Position{}, fmt.Errorf("redistransport: head: %w", gone)
		}
		if epoch == "" {
			return transport.Position{}, fmt.Errorf("redistransport: head %q: %w", topic, transport.ErrUnknownTopic)
		}
		seq, err := strconv.ParseUint(seqText, 10, 64)
		if err != nil {
			return transport.Position{}, fmt.Errorf("redistransport: head %q: meta seq %q: %w", topic, seqText, err)
		}
		pos := transport.Position{Epoch: epoch, Seq: seq}
		l := last.Val()
		if len(l) > 0 {
			pos.ID = l[0].ID
		}
		if seqText2 == seqText {
			return pos, nil
		}
		// Publishes ran between the two HMGETs: the last entry, read
		// between them, is the head if its seq is within their range.
		seq2, err := strconv.ParseUint(seqText2, 10, 64)
		if err != nil || len(l) == 0 {
			continue
		}
		s, _ := l[0].Values["seq"].(string)
		if es, err := strconv.ParseUint(s, 10, 64); err == nil && seq <= es && es <= seq2 {
			pos.Seq = es
			return pos, nil
		}
	}
	return transport.Position{}, wrapErr("head", topic, errChurn)
}

// metaFields returns the epoch and seq of an HMGET epoch seq reply ("" for
// a missing field).
func metaFields(vals []any) (epoch, seq string) {
	if len(vals) == 2 {
		epoch, _ = vals[0].(string)
		seq, _ = vals[1].(string)
	}
	return epoch, seq
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
