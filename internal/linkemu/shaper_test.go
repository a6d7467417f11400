package linkemu

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)

// At 256 kbit/s a 1,000-byte packet takes 31.25 ms on the wire; packets
// that arrive together leave one after another, each Delay after its send.
func TestShaperDepartures(t *testing.T) {
	s := NewShaper(Params{Delay: 600 * time.Millisecond, Rate: 256_000})
	per := time.Duration(1000 * 8 * float64(time.Second) / 256_000)
	if per != 31250*time.Microsecond {
		t.Fatalf("per-packet time %v", per)
	}
	for i := 1; i <= 5; i++ {
		at, v := s.Admit(t0, 1000)
		if v != Deliver {
			t.Fatalf("packet %d: verdict %v", i, v)
		}
		if want := t0.Add(time.Duration(i)*per + 600*time.Millisecond); !at.Equal(want) {
			t.Fatalf("packet %d delivered at +%v, want +%v", i, at.Sub(t0), want.Sub(t0))
		}
	}
	// The wire is idle again long after: no credit is saved up, the next
	// packet is sent at once.
	later := t0.Add(10 * time.Second)
	if at, _ := s.Admit(later, 500); !at.Equal(later.Add(per/2 + 600*time.Millisecond)) {
		t.Fatalf("after idle: delivered at +%v", at.Sub(later))
	}
	// Arriving while the wire is busy: it waits its turn.
	at1, _ := s.Admit(later.Add(time.Millisecond), 1000)
	if want := later.Add(per/2 + per + 600*time.Millisecond); !at1.Equal(want) {
		t.Fatalf("busy wire: delivered at +%v, want +%v", at1.Sub(later), want.Sub(later))
	}
}

// Delivery times never decrease, whatever the sizes and arrivals: the
// order of a direction is kept.
func TestShaperKeepsOrder(t *testing.T) {
	s := NewShaper(Params{Delay: 50 * time.Millisecond, Rate: 1_000_000, Loss: 0.1, Queue: 1 << 20, Seed: 3})
	now, last := t0, time.Time{}
	for i := 0; i < 10000; i++ {
		now = now.Add(time.Duration(i%7) * 100 * time.Microsecond)
		at, v := s.Admit(now, 40+(i*131)%1460)
		if v != Deliver {
			continue
		}
		if at.Before(last) {
			t.Fatalf("packet %d delivered at %v, before the previous one (%v)", i, at, last)
		}
		if at.Before(now.Add(50 * time.Millisecond)) {
			t.Fatalf("packet %d delivered before the delay", i)
		}
		last = at
	}
}

// Loss is drawn from the seed: the same seed loses the same packets, about
// Loss of them, and a lost packet still uses its time on the wire.
func TestShaperLossSeeded(t *testing.T) {
	run := func(seed uint64) (lost []int, s *Shaper) {
		s = NewShaper(Params{Loss: 0.05, Rate: 256_000, Queue: 1 << 30, Seed: seed})
		for i := 0; i < 20000; i++ {
			if _, v := s.Admit(t0, 100); v == Lost {
				lost = append(lost, i)
			}
		}
		return lost, s
	}
	a, s := run(1)
	b, _ := run(1)
	c, _ := run(2)
	if len(a) != len(b) || len(a) == 0 {
		t.Fatalf("same seed, %d and %d lost", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed lost packet %d in one run, %d in the other", a[i], b[i])
		}
	}
	same := len(a) == len(c)
	for i := 0; same && i < len(a); i++ {
		same = a[i] == c[i]
	}
	if same {
		t.Fatal("seeds 1 and 2 lost the same packets")
	}
	if len(a) < 800 || len(a) > 1200 {
		t.Fatalf("%d of 20000 lost at 5%%", len(a))
	}
	if s.LostPackets != uint64(len(a)) || s.Delivered+s.LostPackets != 20000 {
		t.Fatalf("counters: %+v", s)
	}
	// 20,000 packets of 100 bytes at 32,000 bytes/s: the wire is busy until
	// t0+62.5 s, lost ones included.
	if want := t0.Add(62500 * time.Millisecond); !s.free.Equal(want) {
		t.Fatalf("wire free at +%v, want +62.5s", s.free.Sub(t0))
	}
}

// The queue holds Queue bytes not yet sent; arrivals beyond are dropped
// (drop-tail), and room comes back as the wire sends.
func TestShaperQueueBound(t *testing.T) {
	s := NewShaper(Params{Rate: 80_000, Queue: 10_000}) // 10,000 bytes/s; 1,000 bytes a 100 ms
	// A burst of 20 packets of 1,000 bytes at once: the first goes on the
	// wire; the queue then holds what is not sent yet. Backlog before the
	// k-th arrival (k from 0) is k×1000 bytes, so k = 0…9 fit (9,000 + 1,000
	// ≤ 10,000) and 10…19 are dropped.
	for k := 0; k < 20; k++ {
		_, v := s.Admit(t0, 1000)
		if want := Deliver; k >= 10 {
			if v != QueueFull {
				t.Fatalf("packet %d: %v, want a queue drop", k, v)
			}
		} else if v != want {
			t.Fatalf("packet %d: %v, want delivered", k, v)
		}
	}
	if s.QueueDrops != 10 || s.Delivered != 10 {
		t.Fatalf("counters: %+v", s)
	}
	// 350 ms later 3.5 packets have been sent: 6,500 bytes wait, so three
	// more fit (9,500 ≤ 10,000 before the last) and the fourth does not.
	now := t0.Add(350 * time.Millisecond)
	for k := 0; k < 4; k++ {
		_, v := s.Admit(now, 1000)
		if (k < 3) != (v == Deliver) {
			t.Fatalf("after 350 ms, packet %d: %v", k, v)
		}
	}
	// An unlimited link has no queue.
	u := NewShaper(Params{Delay: time.Second})
	for k := 0; k < 1000; k++ {
		if at, v := u.Admit(t0, 1500); v != Deliver || !at.Equal(t0.Add(time.Second)) {
			t.Fatalf("unlimited link: %v at %v", v, at)
		}
	}
}
