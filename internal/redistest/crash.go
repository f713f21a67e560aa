package redistest

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// WithAOFEverySec turns on the append-only file with appendfsync everysec,
// as most deployments run it: a host crash (power loss, kernel panic) loses
// the writes of the last second or so, although they were acknowledged.
// [Server.MarkAOF] and [Server.CrashToMark] emulate such a crash. Automatic
// AOF rewrites are off, so the file a mark names stays the one Redis appends
// to, and aof-load-truncated is yes, so a cut in the middle of a command
// loads. Kill alone (a process crash, not a host crash) loses nothing: the
// page cache keeps what Redis wrote.
func WithAOFEverySec() Option {
	return func(c *config) {
		c.aof = true
		c.fsync = "everysec"
	}
}

// AOFMark is a point in a server's append-only file, from [Server.MarkAOF].
type AOFMark struct {
	File string // path of the AOF file Redis appends to (Redis 7: appendonlydir/*.incr.aof)
	Size int64  // its size at the mark

	manifest string
}

// MarkAOF returns the current end of the server's AOF. Every write
// acknowledged before the call is in the file up to the mark: it waits until
// the server's AOF buffer is empty (aof_buffer_length:0; with everysec
// Redis may hold writes back while a slow fsync runs) and then reads the
// size of the file Redis appends to, named by the last "type i" entry of
// the manifest in appendonlydir. Writes acknowledged after it returns lie
// beyond the mark. It fails the test if AOF is off or a rewrite runs.
func (s *Server) MarkAOF(t testing.TB) AOFMark {
	t.Helper()
	rc, err := dialRESP(s.Addr(), s.cfg.password)
	if err != nil {
		t.Fatalf("redistest: MarkAOF %s: %v", s.Addr(), err)
	}
	defer rc.Close()
	v, err := rc.do("CONFIG", "GET", "append*")
	if err != nil {
		t.Fatalf("redistest: MarkAOF %s: CONFIG GET append*: %v", s.Addr(), err)
	}
	cfg := pairs(v)
	if cfg["appendonly"] != "yes" {
		t.Fatalf("redistest: MarkAOF %s: appendonly is %q; start the server WithAOFEverySec", s.Addr(), cfg["appendonly"])
	}
	deadline := time.Now().Add(readyTimeout)
	for {
		v, err := rc.do("INFO", "persistence")
		if err != nil {
			t.Fatalf("redistest: MarkAOF %s: INFO persistence: %v", s.Addr(), err)
		}
		str, _ := v.(string)
		p := parseInfo(str)
		if p["aof_rewrite_in_progress"] != "0" || p["aof_rewrite_scheduled"] != "0" {
			t.Fatalf("redistest: MarkAOF %s: an AOF rewrite is running, so no mark would hold", s.Addr())
		}
		if p["aof_buffer_length"] == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: MarkAOF %s: aof_buffer_length still %s after %v", s.Addr(), p["aof_buffer_length"], readyTimeout)
		}
		time.Sleep(time.Millisecond)
	}
	manifest := filepath.Join(s.dir, cfg["appenddirname"], cfg["appendfilename"]+".manifest")
	file, err := lastIncrAOF(manifest)
	if err != nil {
		t.Fatalf("redistest: MarkAOF %s: %v", s.Addr(), err)
	}
	st, err := os.Stat(file)
	if err != nil {
		t.Fatalf("redistest: MarkAOF %s: %v", s.Addr(), err)
	}
	return AOFMark{File: file, Size: st.Size(), manifest: manifest}
}

// CrashToMark emulates a host crash that lost everything written since m:
// it SIGKILLs the server, cuts its AOF back to m.Size, and restarts it on the
// same port and dir (waiting until it has loaded). Writes acknowledged
// before the mark are there after it; writes acknowledged after the mark are
// gone. It returns how many bytes it cut. It fails the test if the server
// now appends to another file than the mark's (an AOF rewrite ran, e.g. a
// BGREWRITEAOF), since the cut would then be meaningless.
func (s *Server) CrashToMark(t testing.TB, m AOFMark) (cut int64) {
	t.Helper()
	s.Kill(t)
	if m.manifest == "" {
		t.Fatalf("redistest: CrashToMark %s: the mark does not come from MarkAOF", s.Addr())
	}
	file, err := lastIncrAOF(m.manifest)
	if err != nil {
		t.Fatalf("redistest: CrashToMark %s: %v", s.Addr(), err)
	}
	if file != m.File {
		t.Fatalf("redistest: CrashToMark %s: Redis now appends to %s, not to the marked %s (an AOF rewrite ran)", s.Addr(), file, m.File)
	}
	st, err := os.Stat(file)
	if err != nil {
		t.Fatalf("redistest: CrashToMark %s: %v", s.Addr(), err)
	}
	if st.Size() < m.Size {
		t.Fatalf("redistest: CrashToMark %s: %s has %d bytes, less than the mark's %d", s.Addr(), file, st.Size(), m.Size)
	}
	if err := os.Truncate(file, m.Size); err != nil {
		t.Fatalf("redistest: CrashToMark %s: %v", s.Addr(), err)
	}
	s.Restart(t)
	return st.Size() - m.Size
}

// lastIncrAOF returns the path of the last incremental file in a Redis 7
// AOF manifest (lines "file NAME seq N type b|h|i").
func lastIncrAOF(manifest string) (string, error) {
	f, err := os.Open(manifest)
	if err != nil {
		return "", fmt.Errorf("AOF manifest: %w (Redis 7 multi-part AOF expected)", err)
	}
	defer f.Close()
	last := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		kv := map[string]string{}
		for i := 0; i+1 < len(fields); i += 2 {
			kv[fields[i]] = fields[i+1]
		}
		if kv["type"] == "i" {
			name := kv["file"]
			if uq, err := strconv.Unquote(name); err == nil {
				name = uq
			}
			last = name
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	if last == "" {
		return "", fmt.Errorf("%s names no incremental AOF file", manifest)
	}
	return filepath.Join(filepath.Dir(manifest), last), nil
}

// Snapshot writes an RDB snapshot now (SAVE). A server without AOF loads it
// when it starts again, so Snapshot, more writes, [Server.Kill] and
// [Server.Restart] emulate a crash of an RDB-only deployment: the writes
// after the snapshot are gone. (With AOF on, Restart loads the AOF instead.)
func (s *Server) Snapshot(t testing.TB) {
	t.Helper()
	if _, err := command(s.Addr(), s.cfg.password, "SAVE"); err != nil {
		t.Fatalf("redistest: SAVE on %s: %v", s.Addr(), err)
	}
}
