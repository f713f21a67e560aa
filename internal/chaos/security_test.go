package chaos

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
)

// roundTrip publishes n events on topic through pubTr and checks that a
// subscriber on subTr gets them.
func roundTrip(t *testing.T, pubTr, subTr transport.Transport, topic string, n int) {
	t.Helper()
	pub, _ := bus.New(pubTr)
	defer pub.Close()
	sub, _ := bus.New(subTr, followerOptions())
	got := make(chan int64, n)
	if _, err := sub.Handle(topic, bus.HandlerFunc(func(_ context.Context, m *bus.Message) error {
		k, err := decodeK(m)
		got <- k
		return err
	}), bus.StartAt(bus.Beginning())); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sub.Run(context.Background()) }()
	defer func() {
		sub.Close()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	for i := 1; i <= n; i++ {
		if _, err := pub.Publish(context.Background(), Event{K: int64(i), Topic: topic}); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	for i := 1; i <= n; i++ {
		select {
		case k := <-got:
			if k != int64(i) {
				t.Fatalf("got event %d, want %d", k, i)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("event %d not delivered within %v", i, waitTimeout)
		}
	}
}

// aclRules is the minimal rule set of docs/operations.md.
const aclRules = "resetchannels ~durabus:* &durabus:* -@all +evalsha +eval +hmget +time +xrevrange +xadd +xtrim +hset +get +set +publish +hget +xrange +exists +zrange +zadd +hgetall +hincrby +hkeys +subscribe +psubscribe +unsubscribe +punsubscribe +ping"

func TestLeastPrivilegeACLUserWorksAndOthersFailClearly(t *testing.T) {
	srv := redistest.Start(t,
		redistest.WithACL("app on >app-secret "+aclRules),
		redistest.WithACL("reader on >reader-secret resetchannels ~durabus:* &durabus:* -@all +xrange +hget +hgetall +subscribe +ping"))
	client := func(user, pw string) *redis.Client {
		o := clientOptions(srv.Addr())
		o.Username, o.Password = user, pw
		c := redis.NewClient(o)
		t.Cleanup(func() { c.Close() })
		return c
	}
	app, err := redistransport.New(client("app", "app-secret"))
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	roundTrip(t, app, app, "acl.orders", 50)

	// A user who may read but not publish gets an error naming the refused
	// command and the docs.
	reader, _ := redistransport.New(client("reader", "reader-secret"))
	defer reader.Close()
	b, _ := bus.New(reader)
	_, err = b.Publish(context.Background(), Event{K: 1, Topic: "acl.orders"})
	if err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("publish without the rights: %v, want a NOPERM error", err)
	}
	t.Logf("publish without the rights: %v", err)
	// A wrong password fails at once, clearly.
	bad, _ := redistransport.New(client("app", "wrong"))
	defer bad.Close()
	b2, _ := bus.New(bad)
	if _, err = b2.Publish(context.Background(), Event{K: 1, Topic: "acl.orders"}); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("publish with a wrong password: %v, want a WRONGPASS error", err)
	}
	t.Logf("wrong password: %v", err)
}

// testCA writes a CA and a server certificate for 127.0.0.1 (ECDSA P-256)
// into dir and returns the CA pool.
func testCA(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "durabus test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "redis"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	write := func(name, typ string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.crt", "CERTIFICATE", caDER)
	write("redis.crt", "CERTIFICATE", der)
	write("redis.key", "EC PRIVATE KEY", keyDER)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool
}

func TestTLSWithATestCA(t *testing.T) {
	dir := t.TempDir()
	pool := testCA(t, dir)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsPort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	srv := redistest.Start(t, redistest.WithArgs(
		"--tls-port", strconv.Itoa(tlsPort),
		"--tls-cert-file", filepath.Join(dir, "redis.crt"),
		"--tls-key-file", filepath.Join(dir, "redis.key"),
		"--tls-ca-cert-file", filepath.Join(dir, "ca.crt"),
		"--tls-auth-clients", "no"))
	_ = srv
	url := "rediss://127.0.0.1:" + strconv.Itoa(tlsPort) + "/0"
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opts.TLSConfig.RootCAs = pool
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	tr, err := redistransport.New(rdb)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	roundTrip(t, tr, tr, "tls.orders", 50)
	t.Logf("published and delivered 50 events over %s (TLS %s)", url, tlsVersion(t, tlsPort, pool))

	// A client that does not trust the CA is refused.
	untrusted, _ := redis.ParseURL(url)
	c := redis.NewClient(untrusted)
	defer c.Close()
	utr, _ := redistransport.New(c)
	defer utr.Close()
	b, _ := bus.New(utr)
	var uerr *tls.CertificateVerificationError
	if _, err := b.Publish(context.Background(), Event{K: 1, Topic: "tls.orders"}); !errors.As(err, &uerr) {
		t.Fatalf("publish with a client that does not trust the CA: %v, want a certificate error", err)
	}
}

func tlsVersion(t *testing.T, port int, pool *x509.CertPool) string {
	c, err := tls.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port), &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return tls.VersionName(c.ConnectionState().Version)
}

// TestEnvelopeFieldsNeverBecomeCommandsOrKeys publishes envelopes whose
// every free field holds Redis- and Lua-injection-like text, then checks
// that Redis holds exactly durabus's keys for the topic and that every
// field comes back byte for byte.
func TestEnvelopeFieldsNeverBecomeCommandsOrKeys(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(clientOptions(srv.Addr()))
	defer rdb.Close()
	tr, _ := redistransport.New(rdb)
	defer tr.Close()
	ctx := context.Background()
	evil := []string{
		"durabus:{x}:meta", "durabus:{inj}:log", "*", "{inj}", "\r\nFLUSHALL\r\n", "\r\n*1\r\n$8\r\nFLUSHALL\r\n",
		"'); redis.call('FLUSHALL'); --", "]]..redis.call('SET','pwned','1')..[[", "$(rm -rf /)", "KEYS *", "\x00nul",
		"v1 e 99 1\n1-1 2\n{}", "%s%s%n", strings.Repeat("A", 4096),
	}
	b, _ := bus.New(tr, bus.WithSource("durabus:{x}:meta"))
	sub, _ := bus.New(tr, followerOptions())
	got := make(chan *bus.Message, len(evil))
	sub.Handle("inj", bus.HandlerFunc(func(_ context.Context, m *bus.Message) error { got <- m; return nil }), bus.StartAt(bus.Beginning()))
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	defer func() { sub.Close(); <-done }()
	for i, s := range evil {
		_, err := b.Publish(ctx, Injection{Key: s, Cmd: s, Nested: map[string]string{s: s}}, bus.ToTopic("inj"),
			bus.WithEnvelope(envelopeOpts(s)...))
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	for i, s := range evil {
		select {
		case m := <-got:
			var p Injection
			if err := jsonUnmarshal(m.Data, &p); err != nil || p.Key != s || p.Cmd != s || p.Nested[s] != s || m.Subject != s || m.Source != "durabus:{x}:meta" {
				t.Errorf("event %d came back changed: %+v, %v", i, p, err)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("event %d not delivered", i)
		}
	}
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"durabus:{inj}:log": true, "durabus:{inj}:meta": true, "durabus:topics": true}
	for _, k := range keys {
		if !want[k] {
			t.Errorf("unexpected key %q: an envelope field became a key or a command", k)
		}
	}
	if len(keys) != len(want) {
		t.Errorf("keys %v, want %v", keys, want)
	}
}

// Injection carries hostile strings in its payload.
type Injection struct {
	Key    string            `json:"key"`
	Cmd    string            `json:"cmd"`
	Nested map[string]string `json:"nested"`
}

func (Injection) EventType() string { return "inj.event" }

func TestTopicNamesAreValidatedOnPublish(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(clientOptions(srv.Addr()))
	defer rdb.Close()
	tr, _ := redistransport.New(rdb)
	defer tr.Close()
	b, _ := bus.New(tr)
	ctx := context.Background()
	for _, topic := range []string{
		strings.Repeat("a", 201), "orders.*", "orders?", "orders[1]", "{orders}", "orders}", "a b", "a\r\nb",
		"a\x00b", "caf\u00e9", "orders/1", "durabus:{x}:meta",
	} {
		_, err := b.Publish(ctx, Event{K: 1, Topic: "x"}, bus.ToTopic(topic))
		if !errors.Is(err, transport.ErrInvalidTopic) {
			t.Errorf("publish to %q: %v, want an error wrapping transport.ErrInvalidTopic", topic, err)
		}
	}
	for _, topic := range []string{"a", strings.Repeat("a", 200), "Orders.v2_eu-west:1"} {
		if _, err := b.Publish(ctx, Event{K: 1, Topic: "x"}, bus.ToTopic(topic)); err != nil {
			t.Errorf("publish to %q: %v", topic, err)
		}
	}
	keys, _ := rdb.Keys(ctx, "*").Result()
	if len(keys) != 7 { // 3 topics × (log, meta) + durabus:topics
		t.Errorf("keys after the refused publishes: %v", keys)
	}
}

func envelopeOpts(s string) []envelope.Option {
	return []envelope.Option{envelope.WithSubject(s), envelope.WithExtension("correlationid", s)}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
