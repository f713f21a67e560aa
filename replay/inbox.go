package replay

import "sync"

// inbox is a topic's queue of live frames: bounded, and sized by what it
// holds rather than by its bound, so that thousands of mostly idle topics
// of a pattern subscription cost little memory.
type inbox struct {
	max   int
	ready chan struct{} // signalled when frames are queued

	mu   sync.Mutex
	q    []Delivery
	head int
}

func newInbox(max int) *inbox { return &inbox{max: max, ready: make(chan struct{}, 1)} }

// push queues d; false when the inbox is full. It never blocks.
func (in *inbox) push(d Delivery) bool {
	in.mu.Lock()
	if len(in.q)-in.head >= in.max {
		in.mu.Unlock()
		return false
	}
	in.q = append(in.q, d)
	in.mu.Unlock()
	select {
	case in.ready <- struct{}{}:
	default:
	}
	return true
}

// backlogged reports whether frames are queued and push would still find
// room: the worker is busy and the next frame will wait for it.
func (in *inbox) backlogged() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	n := len(in.q) - in.head
	return n > 0 && n < in.max
}

// pop takes the oldest frame.
func (in *inbox) pop() (Delivery, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.head == len(in.q) {
		return Delivery{}, false
	}
	d := in.q[in.head]
	in.q[in.head] = Delivery{}
	in.head++
	if in.head == len(in.q) {
		// Empty: keep a small array for the next frames, free a big one.
		if cap(in.q) > 64 {
			in.q = nil
		} else {
			in.q = in.q[:0]
		}
		in.head = 0
	}
	return d, true
}

// len returns the number of queued frames.
func (in *inbox) len() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.q) - in.head
}
