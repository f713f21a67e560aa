package redistest

import (
	"fmt"
	"net"
	"sync"
)

// maxClusterPort is the highest port whose cluster bus port (port+10000) is
// still a valid port.
const maxClusterPort = 65535 - 10000

// handedOut remembers every port given to a server by this test binary, so two
// parallel tests never get the same one even if the first server is not
// listening yet. Ports are never returned: there are plenty.
var (
	portsMu   sync.Mutex
	handedOut = map[int]bool{}
)

// freePort returns a loopback port that was free a moment ago. With
// clusterBus set, port+10000 was free as well. Another process may still take
// it before redis-server binds it; callers retry on "Address already in use".
func freePort(clusterBus bool) (int, error) {
	var lastErr error
	for range 200 {
		port, err := listenFree()
		if err != nil {
			lastErr = err
			continue
		}
		if clusterBus {
			if port > maxClusterPort || !portFree(port+10000) {
				continue
			}
		}
		portsMu.Lock()
		taken := handedOut[port]
		handedOut[port] = true
		portsMu.Unlock()
		if !taken {
			return port, nil
		}
	}
	return 0, fmt.Errorf("redistest: no free loopback port found (last error: %v)", lastErr)
}

func listenFree() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
