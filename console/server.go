package console

import (
	"bytes"
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/durabus/durabus/transport"
)

//go:embed web
var webFS embed.FS

// cookieName holds the token after "?token=…" was opened once.
const cookieName = "durabus_console"

// writeHeader must be on every write request: a form on another site
// cannot set it, and a script on another site needs a CORS preflight that
// the console never answers.
const writeHeader = "X-Durabus-Console"

// pageData is what every page template gets.
type pageData struct {
	Title, Active string
	AllowWrite    bool
	Namespace     string
	Redis         string
	Now           time.Time
	// Refresh is the URL the page reloads its content from every few
	// seconds; empty for pages that do not.
	Refresh string
	// Err is why the snapshot could not be read, Hint what to do about it.
	Err, Hint string
	Body      any
}

var funcs = template.FuncMap{
	"ago": func(t time.Time, now time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return human(now.Sub(t)) + " ago"
	},
	"age": func(t time.Time, now time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return human(now.Sub(t))
	},
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05.000Z")
	},
	"rate": func(r float64) string {
		switch {
		case r == 0:
			return "0/s"
		case r < 10:
			return strconv.FormatFloat(r, 'f', 1, 64) + "/s"
		}
		return strconv.FormatFloat(r, 'f', 0, 64) + "/s"
	},
	"pretty": func(b []byte) string {
		var out bytes.Buffer
		if json.Indent(&out, b, "", "  ") != nil {
			return string(b)
		}
		return out.String()
	},
	"add": func(a, b int) int { return a + b },
}

// human prints a duration with one unit of precision that fits it.
func human(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return strconv.Itoa(int(d.Hours()/24)) + "d"
}

// pages are the page templates, each the layout plus its own file.
var pages = func() map[string]*template.Template {
	base := template.Must(template.New("").Funcs(funcs).ParseFS(webFS, "web/layout.html"))
	m := map[string]*template.Template{}
	for _, p := range []string{"topics", "consumers", "dead", "tail", "losses"} {
		m[p] = template.Must(template.Must(base.Clone()).ParseFS(webFS, "web/"+p+".html"))
	}
	return m
}()

// Handler returns the console's HTTP handler: the pages, the live tail's
// event stream, the requeue endpoint and the embedded assets.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(webFS, "web/static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "topics", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /topics", c.serveTopics)
	mux.HandleFunc("GET /consumers", c.serveConsumers)
	mux.HandleFunc("GET /dead", c.serveDead)
	mux.HandleFunc("GET /tail", c.serveTailPage)
	mux.HandleFunc("GET /losses", c.serveLosses)
	mux.HandleFunc("GET /api/tail", c.serveTail)
	mux.HandleFunc("POST /api/requeue", c.serveRequeue)
	return c.guard(mux)
}

// guard checks the token, or without one the Host header, and sets the
// headers every answer carries.
func (c *Console) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		if c.token == "" {
			if !loopbackHost(r.Host) {
				http.Error(w, "durabus console: without --token it answers only requests to a loopback address (localhost, 127.0.0.1, [::1]); start it with --token to serve other names", http.StatusForbidden)
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		if q := r.URL.Query().Get("token"); q != "" && r.Method == http.MethodGet {
			if !c.tokenOK(q) {
				http.Error(w, "durabus console: wrong token", http.StatusUnauthorized)
				return
			}
			http.SetCookie(w, &http.Cookie{Name: cookieName, Value: q, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
			u := *r.URL
			v := u.Query()
			v.Del("token")
			u.RawQuery = v.Encode()
			http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
			return
		}
		tok := ""
		if a := r.Header.Get("Authorization"); strings.HasPrefix(a, "Bearer ") {
			tok = strings.TrimPrefix(a, "Bearer ")
		} else if ck, err := r.Cookie(cookieName); err == nil {
			tok = ck.Value
		}
		if !c.tokenOK(tok) {
			http.Error(w, "durabus console: this console needs its token: open it once as /?token=TOKEN (the token of --token or DURABUS_CONSOLE_TOKEN), or send Authorization: Bearer TOKEN", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (c *Console) tokenOK(t string) bool {
	return t != "" && subtle.ConstantTimeCompare([]byte(t), []byte(c.token)) == 1
}

// loopbackHost reports whether a Host header names a loopback address.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// IsLoopback reports whether a listen address (host:port) binds only
// loopback interfaces: "localhost" or a loopback IP. An empty host binds
// every interface and is not loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	return loopbackHost(host)
}

func (c *Console) page(name, title string) pageData {
	return pageData{Title: title, Active: name, AllowWrite: c.allowWrite, Now: time.Now()}
}

// withSnapshot fills the snapshot part of a page and returns the snapshot,
// or nil with pd.Err set.
func (c *Console) withSnapshot(ctx context.Context, pd *pageData) *Snapshot {
	s, err := c.current(ctx, time.Second)
	if s != nil {
		pd.Namespace, pd.Redis = s.Namespace, s.Redis
	}
	if err != nil {
		pd.Err, pd.Hint = err.Error(), hint(err)
		return nil
	}
	return s
}

// hint says what to do about an error from Redis.
func hint(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "NOPERM"):
		return "The Redis user of this console lacks a permission: see docs/console.md for the read-only ACL line the console needs, and add the command or key named above."
	case strings.Contains(msg, "connection refused"), strings.Contains(msg, "i/o timeout"):
		return "Redis does not answer; the console keeps trying."
	}
	return ""
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, name string, pd pageData) {
	t := pages[name]
	tmpl := "layout"
	if r.URL.Query().Get("partial") == "1" {
		tmpl = "content"
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, tmpl, pd); err != nil {
		c.log.Error("durabus console: render", "page", name, "err", err)
		http.Error(w, "durabus console: render "+name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}

// refreshURL is the page's own URL with partial=1, for the content's
// periodic reload.
func refreshURL(r *http.Request, name string) string {
	v := r.URL.Query()
	v.Set("partial", "1")
	return name + "?" + v.Encode()
}

type topicRow struct {
	Topic
	Spark sparkline
}

type topicsView struct {
	Rows        []topicRow
	Total       int
	Q           string
	PatternSubs int64
	// Cluster is set when a topic has a Master: the page shows the column.
	Cluster     bool
	SampleEvery time.Duration
	Started     time.Time
}

func (c *Console) serveTopics(w http.ResponseWriter, r *http.Request) {
	pd := c.page("topics", "Topics")
	pd.Refresh = refreshURL(r, "topics")
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	v := &topicsView{Q: q, SampleEvery: c.sampleEvery, Started: c.started}
	if s := c.withSnapshot(r.Context(), &pd); s != nil {
		now := time.Now()
		v.Total, v.PatternSubs = len(s.Topics), s.PatternSubscriptions
		c.mu.Lock()
		for _, t := range s.Topics {
			if !matchQuery(q, t.Name) {
				continue
			}
			v.Rows = append(v.Rows, topicRow{Topic: t, Spark: spark(c.rates(t.Name), now)})
			v.Cluster = v.Cluster || t.Master != ""
		}
		c.mu.Unlock()
		sort.Slice(v.Rows, func(i, j int) bool { return v.Rows[i].Name < v.Rows[j].Name })
		pd.Body = v
	}
	c.render(w, r, "topics", pd)
}

// matchQuery reports whether a topic matches the search: a glob when it
// has one, else a case-insensitive substring.
func matchQuery(q, name string) bool {
	if q == "" {
		return true
	}
	if transport.IsPattern(q) {
		ok, err := path.Match(q, name)
		return err == nil && ok
	}
	return strings.Contains(strings.ToLower(name), strings.ToLower(q))
}

type consumerRow struct {
	Consumer
	At time.Time // the checkpointed event's time, from its stream id
}

type consumersView struct{ Rows []consumerRow }

func (c *Console) serveConsumers(w http.ResponseWriter, r *http.Request) {
	pd := c.page("consumers", "Consumers")
	pd.Refresh = refreshURL(r, "consumers")
	if s := c.withSnapshot(r.Context(), &pd); s != nil {
		v := &consumersView{}
		for _, cs := range s.Consumers {
			v.Rows = append(v.Rows, consumerRow{Consumer: cs, At: streamIDTime(cs.StreamID)})
		}
		pd.Body = v
	}
	c.render(w, r, "consumers", pd)
}

// streamIDTime is the time in a stream id's millisecond part; zero when it
// has none.
func streamIDTime(id string) time.Time {
	sid, ok := transport.ParseStreamID(id)
	if !ok || sid.MS == 0 {
		return time.Time{}
	}
	return sid.Time()
}

// deadTopic is a topic that has a dead-letter topic.
type deadTopic struct {
	Name    string // the original topic
	Backlog int64  // entries in its dead-letter topic, requeued or not
}

type deadView struct {
	Topics  []deadTopic
	Topic   string
	Known   bool
	Letters []DeadLetter
	More    bool
	ListErr string
	// Snapshot is set when the topics could be read (else Topics is empty
	// for want of a listing, not of dead letters).
	Snapshot bool
}

// deadListMax is how many dead letters the page lists.
const deadListMax = 100

func (c *Console) serveDead(w http.ResponseWriter, r *http.Request) {
	pd := c.page("dead", "Dead letters")
	pd.Refresh = refreshURL(r, "dead")
	v := &deadView{Topic: r.URL.Query().Get("topic")}
	if s := c.withSnapshot(r.Context(), &pd); s != nil {
		for _, t := range s.Topics {
			if name, ok := strings.CutSuffix(t.Name, ".dead"); ok && name != "" {
				v.Topics = append(v.Topics, deadTopic{Name: name, Backlog: t.Backlog})
				v.Known = v.Known || name == v.Topic
			}
		}
		v.Snapshot = true
	}
	if v.Topic == "" && len(v.Topics) == 1 {
		v.Topic, v.Known = v.Topics[0].Name, true
	}
	if v.Topic != "" {
		if err := transport.ValidateTopic(v.Topic); err != nil {
			v.ListErr = err.Error()
		} else {
			ls, err := c.src.DeadLetters(r.Context(), v.Topic, deadListMax+1)
			if err != nil {
				v.ListErr = err.Error()
				if h := hint(err); h != "" {
					v.ListErr += " " + h
				}
			}
			if len(ls) > deadListMax {
				ls, v.More = ls[:deadListMax], true
			}
			v.Letters = ls
		}
	}
	pd.Body = v
	c.render(w, r, "dead", pd)
}

type lossesView struct {
	Notices                          []Notice
	Losses, Lost, Reconnects, Errors int
	Pattern                          string
	Since                            time.Time
	Running                          bool
	Seen                             uint64
}

func (c *Console) serveLosses(w http.ResponseWriter, r *http.Request) {
	pd := c.page("losses", "Losses & reconnects")
	pd.Refresh = refreshURL(r, "losses")
	c.mu.Lock()
	v := &lossesView{
		Losses: c.counts.losses, Lost: c.counts.lost, Reconnects: c.counts.reconnects, Errors: c.counts.errors,
		Pattern: c.followed.pattern, Since: c.followed.since, Running: c.followed.running, Seen: c.followed.events,
	}
	for i := len(c.notices) - 1; i >= 0 && len(v.Notices) < 200; i-- {
		v.Notices = append(v.Notices, c.notices[i])
	}
	if s := c.snap; s != nil {
		pd.Namespace, pd.Redis = s.Namespace, s.Redis
	}
	c.mu.Unlock()
	pd.Body = v
	c.render(w, r, "losses", pd)
}

type tailView struct {
	Pattern  string
	MaxBatch int
	Every    time.Duration
	MaxRows  int
}

func (c *Console) serveTailPage(w http.ResponseWriter, r *http.Request) {
	pd := c.page("tail", "Live tail")
	c.mu.Lock()
	if s := c.snap; s != nil {
		pd.Namespace, pd.Redis = s.Namespace, s.Redis
	}
	c.mu.Unlock()
	pd.Body = &tailView{Pattern: r.URL.Query().Get("pattern"), MaxBatch: tailBatchMax, Every: tailEvery, MaxRows: tailRows}
	c.render(w, r, "tail", pd)
}

// requeueAnswer is the JSON answer of POST /api/requeue.
type requeueAnswer struct {
	Requeued int    `json:"requeued"`
	Message  string `json:"message"`
}

func (c *Console) serveRequeue(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get(writeHeader) == "" || !sameOrigin(r) {
		writeJSON(w, http.StatusForbidden, requeueAnswer{Message: "durabus console: a write must come from the console's own page (header " + writeHeader + ", same origin)"})
		return
	}
	if !c.allowWrite {
		writeJSON(w, http.StatusForbidden, requeueAnswer{Message: ErrWritesOff.Error()})
		return
	}
	topic := r.FormValue("topic")
	if err := transport.ValidateTopic(topic); err != nil {
		writeJSON(w, http.StatusBadRequest, requeueAnswer{Message: err.Error()})
		return
	}
	limit, err := strconv.Atoi(r.FormValue("limit"))
	if err != nil || limit < 0 {
		writeJSON(w, http.StatusBadRequest, requeueAnswer{Message: fmt.Sprintf("limit %q: want 0 (all) or more", r.FormValue("limit"))})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	n, err := c.src.Requeue(ctx, topic, limit)
	if err != nil {
		msg := fmt.Sprintf("requeued %d dead letter(s) of %s, then: %v", n, topic, err)
		if strings.Contains(err.Error(), "NOPERM") {
			msg += " Requeue publishes: it needs a Redis user with the publishing rights of docs/operations.md, not the console's read-only one."
		}
		c.log.Warn("durabus console: requeue", "topic", topic, "err", err)
		writeJSON(w, http.StatusBadGateway, requeueAnswer{Requeued: n, Message: msg})
		return
	}
	writeJSON(w, http.StatusOK, requeueAnswer{Requeued: n, Message: fmt.Sprintf("requeued %d dead letter(s) of %s", n, topic)})
}

// sameOrigin reports whether a request's Origin, when it has one, is the
// console's own.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

var errBadSince = errors.New("console: bad since")

// parseSince reads the tail's start: "" or "new", "beginning", a duration
// ago ("10m") or an RFC 3339 time.
func parseSince(s string, now time.Time) (Start, error) {
	switch s {
	case "", "new":
		return Start{}, nil
	case "beginning":
		return Start{Beginning: true}, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return Start{Since: now.Add(-d)}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return Start{Since: t}, nil
	}
	return Start{}, fmt.Errorf("%w %q: want new, beginning, a duration such as 10m, or an RFC 3339 time", errBadSince, s)
}
