//go:build linux

package linkemu

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// twoSpaces makes namespaces a and b joined by an emulated link with p each
// way (10.77.0.1 in a, 10.77.0.2 in b), or skips saying why it cannot.
func twoSpaces(t *testing.T, p Params) (a, b string, pair *Pair) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the link emulator test needs root (network namespaces, TUN devices)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("the link emulator test needs `ip` (Debian package iproute2)")
	}
	pre := fmt.Sprintf("fsl%d", os.Getpid()%100000)
	a, b = pre+"a", pre+"b"
	for _, ns := range []string{a, b} {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Skipf("cannot create network namespaces here (%v: %s)", err, strings.TrimSpace(string(out)))
		}
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	}
	pair, err := NewPair(pre+"ta", pre+"tb", p, p)
	if err != nil {
		t.Skipf("cannot create TUN devices here: %v", err)
	}
	t.Cleanup(func() { pair.Close() })
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	for i, x := range []struct{ ns, dev string }{{a, pair.NameA}, {b, pair.NameB}} {
		run("ip", "link", "set", x.dev, "netns", x.ns)
		run("ip", "netns", "exec", x.ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
		run("ip", "-n", x.ns, "addr", "add", fmt.Sprintf("10.77.0.%d/24", i+1), "dev", x.dev)
		run("ip", "-n", x.ns, "link", "set", x.dev, "up")
	}
	pair.Start()
	return a, b, pair
}

// listenIn opens a UDP socket in namespace ns: a thread enters the
// namespace, makes the socket (which stays there) and is thrown away.
func listenIn(t *testing.T, ns, addr string) net.PacketConn {
	t.Helper()
	type res struct {
		c   net.PacketConn
		err error
	}
	ch := make(chan res)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			ch <- res{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- res{err: err}
			return
		}
		c, err := net.ListenPacket("udp4", addr)
		ch <- res{c, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("UDP socket in %s: %v", ns, r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	return r.c
}

// TestTUNLink: over the emulated link (150 ms one-way, no loss, 256 kbit/s)
// a round trip takes at least twice the delay; a burst of 40 datagrams of
// 1,000 IP bytes arrives complete, in order, and spread over at least the
// time the rate allows (the last no sooner than delay + 40 × 31.25 ms
// after the first was sent); the emulator's
// counters agree. Then the devices, goroutines and namespaces go away.
func TestTUNLink(t *testing.T) {
	const delay = 150 * time.Millisecond
	p := Params{Delay: delay, Rate: 256_000}
	before := goleak.IgnoreCurrent()
	a, b, pair := twoSpaces(t, p)
	echo := listenIn(t, b, "10.77.0.2:9000")
	sink := listenIn(t, b, "10.77.0.2:9001")
	cli := listenIn(t, a, "10.77.0.1:0")
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := echo.ReadFrom(buf)
			if err != nil {
				return
			}
			echo.WriteTo(buf[:n], from)
		}
	}()

	buf := make([]byte, 2048)
	for i := 0; i < 3; i++ {
		start := time.Now()
		if _, err := cli.WriteTo([]byte{byte(i)}, &net.UDPAddr{IP: net.IPv4(10, 77, 0, 2), Port: 9000}); err != nil {
			t.Fatal(err)
		}
		cli.SetReadDeadline(time.Now().Add(30 * time.Second))
		if n, _, err := cli.ReadFrom(buf); err != nil || n != 1 || buf[0] != byte(i) {
			t.Fatalf("echo %d: %v (%d bytes)", i, err, n)
		}
		rtt := time.Since(start)
		t.Logf("round trip %d: %v", i, rtt.Round(time.Millisecond))
		if rtt < 2*delay {
			t.Fatalf("round trip %v over a link with %v each way", rtt, delay)
		}
	}

	// The burst: 972 bytes of payload + 8 UDP + 20 IP = 1,000 bytes.
	const n, size = 40, 1000
	ab0, _ := pair.Stats()
	sent := time.Now()
	for i := 0; i < n; i++ {
		d := make([]byte, size-28)
		binary.BigEndian.PutUint32(d, uint32(i))
		if _, err := cli.WriteTo(d, &net.UDPAddr{IP: net.IPv4(10, 77, 0, 2), Port: 9001}); err != nil {
			t.Fatal(err)
		}
	}
	var first, last time.Time
	sink.SetReadDeadline(time.Now().Add(60 * time.Second))
	for i := 0; i < n; i++ {
		m, _, err := sink.ReadFrom(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", i, n, err)
		}
		last = time.Now()
		if i == 0 {
			first = last
		}
		if got := binary.BigEndian.Uint32(buf[:m]); got != uint32(i) || m != size-28 {
			t.Fatalf("datagram %d: got number %d, %d bytes", i, got, m)
		}
	}
	per := time.Duration(size * 8 * float64(time.Second) / float64(p.Rate))
	t.Logf("burst of %d × %d bytes: first after %v, last after %v (the rate allows no less than %v)", n, size,
		first.Sub(sent).Round(time.Millisecond), last.Sub(sent).Round(time.Millisecond), delay+n*per)
	if first.Sub(sent) < delay+per {
		t.Errorf("first datagram after %v: sooner than delay + its time on the wire (%v)", first.Sub(sent), delay+per)
	}
	// The last one cannot leave before all n have been on the wire, one
	// after another, from the first send on (the time the first is seen
	// arriving is late by the scheduler, so it is no base for a bound).
	if last.Sub(sent) < delay+n*per {
		t.Errorf("%d datagrams of %d bytes all arrived %v after the first was sent: faster than %d bit/s (no sooner than %v)",
			n, size, last.Sub(sent), p.Rate, delay+n*per)
	}
	ab, _ := pair.Stats()
	if got := ab.DeliveredSize - ab0.DeliveredSize; got < n*size || ab.Lost+ab.QueueDrops+ab.Overflow+ab.WriteErrors != 0 {
		t.Errorf("emulator counters A→B: %v (%d bytes over the burst)", ab, got)
	}
	t.Logf("A→B: %v", ab)

	// Everything goes: devices with their descriptors, goroutines, namespaces.
	echo.Close()
	sink.Close()
	cli.Close()
	if err := pair.Close(); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct{ ns, dev string }{{a, pair.NameA}, {b, pair.NameB}} {
		if exec.Command("ip", "-n", x.ns, "link", "show", x.dev).Run() == nil {
			t.Errorf("%s still exists in %s after Close", x.dev, x.ns)
		}
	}
	goleak.VerifyNone(t, before)
}

// TestTUNLinkLoss: through the devices, the datagrams that arrive are
// exactly those the emulator did not lose (in order), and about Loss of
// them are lost.
func TestTUNLinkLoss(t *testing.T) {
	p := Params{Delay: 20 * time.Millisecond, Loss: 0.25, Seed: 42}
	a, b, pair := twoSpaces(t, p)
	sink := listenIn(t, b, "10.77.0.2:9001")
	cli := listenIn(t, a, "10.77.0.1:0")
	const n = 200
	ab0, _ := pair.Stats()
	for i := 0; i < n; i++ {
		d := make([]byte, 100)
		binary.BigEndian.PutUint32(d, uint32(i))
		if _, err := cli.WriteTo(d, &net.UDPAddr{IP: net.IPv4(10, 77, 0, 2), Port: 9001}); err != nil {
			t.Fatal(err)
		}
	}
	// Every datagram has been offered to the wire once the counters say so;
	// what is delivered then arrives within the delay (plus scheduling).
	for {
		ab, _ := pair.Stats()
		if ab.Packets-ab0.Packets >= n {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	got, prev := 0, -1
	buf := make([]byte, 2048)
	for {
		sink.SetReadDeadline(time.Now().Add(2 * time.Second))
		m, _, err := sink.ReadFrom(buf)
		if err != nil {
			break
		}
		seq := int(binary.BigEndian.Uint32(buf[:m]))
		if seq <= prev || seq >= n {
			t.Fatalf("datagram %d after %d", seq, prev)
		}
		prev = seq
		got++
	}
	ab, _ := pair.Stats()
	offered, lost := int(ab.Packets-ab0.Packets), int(ab.Lost-ab0.Lost)
	stray := offered - n // anything else the kernel sent that way (none expected)
	t.Logf("%d sent, %d received, %d lost on the wire (seed %d), %d other packets", n, got, lost, p.Seed, stray)
	if got > n-lost+stray || got < n-lost {
		t.Fatalf("%d received, but the emulator lost %d of %d (+%d other packets)", got, lost, n, stray)
	}
	if lost < n/10 || lost > n*4/10 {
		t.Fatalf("%d of %d lost at 25%%", lost, n)
	}
}
