package sync

import (
	"io"
	"log"
	"net"
	"testing"
	"time"
)

// Shutdown must not hang when memberlist's NetTransport is blocked handing
// over a packet or a stream that nobody reads any more (found by the 50-node
// benchmark: engines hung in Close).
func TestTransportShutdownWithPendingTraffic(t *testing.T) {
	tr, err := newMuxTransport("127.0.0.1", 0, log.New(io.Discard, "", 0), nil, Limits{}.withDefaults(profileParams{}))
	if err != nil {
		t.Fatal(err)
	}
	addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: tr.inner.GetAutoBindPort()}
	u, err := net.DialUDP("udp", nil, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	for i := 0; i < 10; i++ { // nobody reads tr.PacketCh(): the pumps block
		_, _ = u.Write([]byte{1, 2, 3})
	}
	for i := 0; i < 3; i++ { // and memberlist-looking streams nobody takes
		c, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write([]byte{6})
	}
	time.Sleep(100 * time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- tr.Shutdown() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("transport shutdown hung with traffic pending")
	}
}
