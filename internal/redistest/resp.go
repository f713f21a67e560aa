package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// adminTimeout bounds each admin command the fixtures send themselves (INFO,
// CONFIG SET, REPLICAOF, SENTINEL ...).
const adminTimeout = 10 * time.Second

// respConn is a plain RESP2 connection for the fixtures' own admin commands.
// Like ping in server.go it avoids go-redis: no pool, no background
// goroutines, and every call is bounded by a deadline, so talking to a paused
// or dying server cannot hang a test or leak a goroutine.
type respConn struct {
	c net.Conn
	r *bufio.Reader
}

// respError is an error reply, such as "OOM command not allowed ...".
type respError string

func (e respError) Error() string { return string(e) }

// dialRESP connects to addr and authenticates with password if it is set.
func dialRESP(addr, password string) (*respConn, error) {
	c, err := net.DialTimeout("tcp", addr, adminTimeout)
	if err != nil {
		return nil, err
	}
	rc := &respConn{c: c, r: bufio.NewReader(c)}
	if password != "" {
		if _, err := rc.do("AUTH", password); err != nil {
			c.Close()
			return nil, fmt.Errorf("AUTH: %w", err)
		}
	}
	return rc, nil
}

func (rc *respConn) Close() error { return rc.c.Close() }

// do sends one command and reads its reply: a string (simple or bulk), an
// int64, a []any, nil (null bulk or array), or a respError as the error.
func (rc *respConn) do(args ...any) (any, error) {
	if err := rc.c.SetDeadline(time.Now().Add(adminTimeout)); err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		s := fmt.Sprint(a)
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(s), s)
	}
	if _, err := io.WriteString(rc.c, b.String()); err != nil {
		return nil, err
	}
	return rc.read()
}

func (rc *respConn) read() (any, error) {
	line, err := rc.r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("redistest: empty RESP line")
	}
	switch line[0] {
	case '+':
		return line[1:], nil
	case '-':
		return nil, respError(line[1:])
	case ':':
		return strconv.ParseInt(line[1:], 10, 64)
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rc.r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return nil, err
		}
		out := make([]any, n)
		for i := range out {
			// An error element is kept as a value, not returned.
			v, err := rc.read()
			var re respError
			if errors.As(err, &re) {
				v, err = re, nil
			}
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	}
	return nil, fmt.Errorf("redistest: unexpected RESP line %q", line)
}

// command runs one command on a new connection to addr.
func command(addr, password string, args ...any) (any, error) {
	rc, err := dialRESP(addr, password)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return rc.do(args...)
}

// info runs INFO section on addr and returns its fields.
func info(addr, password, section string) (map[string]string, error) {
	v, err := command(addr, password, "INFO", section)
	if err != nil {
		return nil, err
	}
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("redistest: INFO reply is %T", v)
	}
	return parseInfo(s), nil
}

// parseInfo parses "key:value" lines (of INFO or CLUSTER INFO).
func parseInfo(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = v
		}
	}
	return m
}

// pairs turns a flat [k1 v1 k2 v2 ...] reply (SENTINEL MASTER, CONFIG GET)
// into a map.
func pairs(v any) map[string]string {
	m := map[string]string{}
	a, _ := v.([]any)
	for i := 0; i+1 < len(a); i += 2 {
		k, _ := a[i].(string)
		m[k] = fmt.Sprint(a[i+1])
	}
	return m
}
