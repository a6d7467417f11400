//go:build linux

package linkemu

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// inFlight bounds the packets one direction holds between leaving the
// queue and their delivery (the delay line). At most Queue bytes wait and
// Rate×Delay bytes are on the wire, so a bound in packets is only reached
// by tiny packets on a fast link; beyond it packets are dropped and counted.
const inFlight = 1 << 14

// Pair is two TUN devices joined by an emulated link: what the kernel
// sends into device A arrives on device B after the A→B Shaper, and the
// other way round. The devices are made in the caller's network namespace;
// move them with `ip link set NAME netns NS` (their file descriptors keep
// working) before bringing them up. Close removes both devices and stops
// every goroutine.
type Pair struct {
	NameA, NameB string
	a, b         *os.File
	dirs         [2]*direction // A→B, B→A
	once         sync.Once
	done         chan struct{}
	wg           sync.WaitGroup
}

type direction struct {
	mu sync.Mutex
	s  *Shaper
	// Counted outside the Shaper: drops at the delay line (inFlight) and
	// writes the receiving device refused (it was down, or gone).
	overflow, writeErrs uint64
	q                   chan packet
}

type packet struct {
	at   time.Time
	data []byte
}

// Stats are one direction's counters.
type Stats struct {
	Packets, Bytes           uint64 // offered by the sending kernel
	Delivered, DeliveredSize uint64 // scheduled for delivery
	Lost, QueueDrops         uint64 // random loss; drop-tail at the queue
	Overflow, WriteErrors    uint64
}

func (s Stats) String() string {
	return fmt.Sprintf("%d packets (%d bytes) offered, %d (%d bytes) delivered, %d lost, %d dropped at the full queue",
		s.Packets, s.Bytes, s.Delivered, s.DeliveredSize, s.Lost, s.QueueDrops)
}

// NewPair creates TUN devices nameA and nameB (IFF_TUN|IFF_NO_PI: raw IP
// packets) with the A→B and B→A parameters. Start the wire with Start.
func NewPair(nameA, nameB string, ab, ba Params) (*Pair, error) {
	a, err := openTUN(nameA)
	if err != nil {
		return nil, err
	}
	b, err := openTUN(nameB)
	if err != nil {
		a.Close()
		return nil, err
	}
	p := &Pair{NameA: nameA, NameB: nameB, a: a, b: b, done: make(chan struct{})}
	p.dirs[0] = &direction{s: NewShaper(ab), q: make(chan packet, inFlight)}
	p.dirs[1] = &direction{s: NewShaper(ba), q: make(chan packet, inFlight)}
	return p, nil
}

func openTUN(name string) (*os.File, error) {
	if len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("TUN device name %q is longer than %d bytes", name, unix.IFNAMSIZ-1)
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w (the kernel needs CONFIG_TUN, and the process CAP_NET_ADMIN)", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create TUN device %s: %w", name, err)
	}
	// Non-blocking: os.NewFile puts it in the runtime's poller, so a read
	// blocks only its goroutine and Close wakes it.
	return os.NewFile(uintptr(fd), "tun:"+name), nil
}

// Start runs the wire: two goroutines per direction (one reads and
// schedules, one delivers when due), until Close.
func (p *Pair) Start() {
	p.wg.Add(4)
	go p.read(p.a, p.dirs[0])
	go p.deliver(p.b, p.dirs[0])
	go p.read(p.b, p.dirs[1])
	go p.deliver(p.a, p.dirs[1])
}

func (p *Pair) read(src *os.File, d *direction) {
	defer p.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, err := src.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			select {
			case <-p.done:
				return
			default:
			}
			// EIO while the device is down, or the like: wait a little
			// rather than spin, and go on.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		d.mu.Lock()
		at, v := d.s.Admit(time.Now(), n)
		if v == Deliver {
			select {
			case d.q <- packet{at: at, data: append([]byte(nil), buf[:n]...)}:
			default:
				d.overflow++
			}
		}
		d.mu.Unlock()
	}
}

func (p *Pair) deliver(dst *os.File, d *direction) {
	defer p.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		var pk packet
		select {
		case <-p.done:
			return
		case pk = <-d.q:
		}
		if wait := time.Until(pk.at); wait > 0 {
			t.Reset(wait)
			select {
			case <-p.done:
				return
			case <-t.C:
			}
		}
		if _, err := dst.Write(pk.data); err != nil {
			d.mu.Lock()
			d.writeErrs++
			d.mu.Unlock()
		}
	}
}

// Stats returns the counters of A→B and B→A.
func (p *Pair) Stats() (ab, ba Stats) {
	get := func(d *direction) Stats {
		d.mu.Lock()
		defer d.mu.Unlock()
		s := d.s
		return Stats{Packets: s.Packets, Bytes: s.Bytes, Delivered: s.Delivered, DeliveredSize: s.DeliveredSize,
			Lost: s.LostPackets, QueueDrops: s.QueueDrops, Overflow: d.overflow, WriteErrors: d.writeErrs}
	}
	return get(p.dirs[0]), get(p.dirs[1])
}

// Close stops the wire and closes both devices (a TUN device not made
// persistent disappears with its last descriptor, in whichever namespace
// it is). It waits for the goroutines, and is safe to call more than once.
func (p *Pair) Close() error {
	var err error
	p.once.Do(func() {
		close(p.done)
		err = errors.Join(p.a.Close(), p.b.Close())
		p.wg.Wait()
	})
	return err
}
