// Package linkemu emulates a poor network link in user space, for the field
// tests on kernels without sch_netem (docs/e2e.md "The link emulator"): a
// pair of TUN devices, one in each of two network namespaces, joined by a
// "wire" that copies IP packets each way with a one-way delay, random loss
// and a rate limit behind a bounded drop-tail queue.
//
// The scheduling (Shaper) is a pure function of arrival times and sizes, so
// that it is tested without devices; the devices and the goroutines that
// move packets are in tun_linux.go.
package linkemu

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// Params describe one direction of a link.
type Params struct {
	Delay time.Duration // one-way propagation delay, added after the packet has been sent at Rate
	Loss  float64       // probability that a packet is lost on the wire, 0 ≤ Loss < 1
	Rate  int           // bits per second; 0 means unlimited (no queue either)
	Queue int           // bytes the modem buffers before dropping arrivals (drop-tail); 0 means DefaultQueue
	Seed  uint64        // seed of the loss draw: the same seed and packets lose the same packets
}

// DefaultQueue is the buffer of the emulated modem: 64 KiB, 2 s of
// traffic at 256 kbit/s. Real cellular and satellite modems buffer seconds
// (bufferbloat); a much smaller buffer would make TCP lose bursts the real
// link carries, a much larger one would hide the queue entirely.
const DefaultQueue = 64 << 10

func (p Params) String() string {
	return fmt.Sprintf("one-way delay %v, loss %g%%, %d kbit/s, queue %d KiB", p.Delay, p.Loss*100, p.Rate/1000, p.queue()>>10)
}

func (p Params) queue() int {
	if p.Queue > 0 {
		return p.Queue
	}
	return DefaultQueue
}

// Verdict says what became of a packet offered to the Shaper.
type Verdict int

const (
	Deliver   Verdict = iota // delivered at the time Admit returned
	Lost                     // sent, at the cost of its time on the wire, and lost on the way (random loss)
	QueueFull                // dropped on arrival: the queue held Queue bytes already (drop-tail)
)

// Shaper schedules the packets of one direction of a link. Admit is called
// for each packet in arrival order; the delivery times it returns never
// decrease, so the order of a direction is kept. It is not safe for
// concurrent use (one direction has one reader).
type Shaper struct {
	p    Params
	rng  *rand.Rand
	free time.Time // when the wire finishes sending what it has accepted so far

	// Counters, in packets and IP bytes.
	Packets, Bytes           uint64 // offered
	Delivered, DeliveredSize uint64
	LostPackets, QueueDrops  uint64
}

// NewShaper returns a Shaper for one direction.
func NewShaper(p Params) *Shaper {
	return &Shaper{p: p, rng: rand.New(rand.NewPCG(p.Seed, p.Seed^0x9e3779b97f4a7c15))}
}

// Admit schedules a packet of size bytes arriving at now. A packet starts
// on the wire when the wire is free (departure = max(now, previous
// departure) + size/rate) and arrives Delay later. The queue holds what is
// accepted but not yet sent: (free − now) × rate bytes; an arrival that
// would exceed Queue is dropped. A lost packet still takes its time on the
// wire, as a frame lost over the air does.
func (s *Shaper) Admit(now time.Time, size int) (at time.Time, v Verdict) {
	s.Packets++
	s.Bytes += uint64(size)
	start := now
	if s.free.After(now) {
		start = s.free
	}
	if s.p.Rate > 0 {
		backlog := float64(start.Sub(now)) / float64(time.Second) * float64(s.p.Rate) / 8
		if backlog+float64(size) > float64(s.p.queue()) && backlog > 0 {
			s.QueueDrops++
			return time.Time{}, QueueFull
		}
		start = start.Add(time.Duration(float64(size) * 8 / float64(s.p.Rate) * float64(time.Second)))
		s.free = start
	}
	if s.p.Loss > 0 && s.rng.Float64() < s.p.Loss {
		s.LostPackets++
		return time.Time{}, Lost
	}
	s.Delivered++
	s.DeliveredSize += uint64(size)
	return start.Add(s.p.Delay), Deliver
}
