package console

import (
	"fmt"
	"strings"
	"time"
)

// rateWindow is how far back the rate chart goes.
const rateWindow = time.Minute

// sample is a topic's head at one moment.
type sample struct {
	at    time.Time
	epoch string
	head  uint64
}

// addSamples records the heads of s; samples older than the window (plus
// one, for the first interval) and topics gone from s are dropped. c.mu is
// held.
func (c *Console) addSamples(s *Snapshot, now time.Time) {
	seen := make(map[string]bool, len(s.Topics))
	for _, t := range s.Topics {
		seen[t.Name] = true
		ss := append(c.samples[t.Name], sample{at: now, epoch: t.Epoch, head: t.Head})
		cut := 0
		for cut < len(ss)-2 && now.Sub(ss[cut+1].at) > rateWindow {
			cut++
		}
		c.samples[t.Name] = append(ss[:0], ss[cut:]...)
	}
	for name := range c.samples {
		if !seen[name] {
			delete(c.samples, name)
		}
	}
}

// ratePoint is the publish rate over one sampling interval, ending at at.
type ratePoint struct {
	at   time.Time
	rate float64 // events per second
}

// rates returns the rates between consecutive samples of topic; an
// interval across an epoch change has no point. c.mu is held.
func (c *Console) rates(topic string) []ratePoint {
	ss := c.samples[topic]
	var out []ratePoint
	for i := 1; i < len(ss); i++ {
		a, b := ss[i-1], ss[i]
		dt := b.at.Sub(a.at).Seconds()
		if dt <= 0 || a.epoch != b.epoch || b.head < a.head {
			continue
		}
		out = append(out, ratePoint{at: b.at, rate: float64(b.head-a.head) / dt})
	}
	return out
}

// sparkline is the data of a small inline SVG chart of a rate.
type sparkline struct {
	Points string // the polyline's points, "x,y x,y …"
	Area   string // the same closed at the bottom, for the fill
	Now    float64
	Max    float64
	Empty  bool
}

const sparkW, sparkH = 120.0, 28.0

// spark draws rs over the last rateWindow ending at now.
func spark(rs []ratePoint, now time.Time) sparkline {
	sl := sparkline{Empty: len(rs) == 0}
	if sl.Empty {
		return sl
	}
	for _, r := range rs {
		sl.Max = max(sl.Max, r.rate)
	}
	sl.Now = rs[len(rs)-1].rate
	top := sl.Max
	if top == 0 {
		top = 1
	}
	var b strings.Builder
	var first float64
	for i, r := range rs {
		x := sparkW - now.Sub(r.at).Seconds()/rateWindow.Seconds()*sparkW
		x = min(max(x, 0), sparkW)
		y := sparkH - 1 - r.rate/top*(sparkH-2)
		if i == 0 {
			first = x
		} else {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.1f,%.1f", x, y)
	}
	sl.Points = b.String()
	last := rs[len(rs)-1]
	lx := min(max(sparkW-now.Sub(last.at).Seconds()/rateWindow.Seconds()*sparkW, 0), sparkW)
	sl.Area = fmt.Sprintf("%.1f,%.1f %s %.1f,%.1f", first, sparkH, sl.Points, lx, sparkH)
	return sl
}
