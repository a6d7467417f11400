//go:build linux

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"fieldsync/internal/linkemu"
)

// netlab builds a small internet out of network namespaces for the field
// tests (docs/e2e.md "Network namespaces"): a "wan" namespace that routes
// between the others, a relay in the open, and per laptop a NAT router that
// masquerades a private network (nftables) with the laptop behind it.
// Nothing is reachable from outside the namespaces the test made, and the
// laptops cannot be reached from the wan at all: no route leads there and
// the routers only translate outbound flows.
//
//	relay 10.201.0.2 ── wan ── 10.20N.0.2 natN 192.168.N.1 ── 192.168.N.2 lapN
type netlab struct {
	t      *testing.T
	prefix string
	spaces []string
	emu    map[int]*linkemu.Pair // laptop → its emulated link (netem_linux_test.go)
}

// requireNetlab skips the test, saying why, where namespaces cannot be made
// (not root, no `ip`, a container without the capability), and installs
// nftables from Debian's packages when it is missing.
func requireNetlab(t *testing.T) *netlab {
	t.Helper()
	if testing.Short() {
		t.Skip("network namespace tests are skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("network namespace tests need root (ip netns, nftables); run `go test ./e2e` as root to include them")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("network namespace tests need `ip` (Debian package iproute2)")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Log("nft missing: installing Debian's nftables package")
		if out, err := exec.Command("sh", "-c", "apt-get install -y nftables || (apt-get update && apt-get install -y nftables)").CombinedOutput(); err != nil {
			t.Skipf("network namespace tests need nftables and it could not be installed: %v\n%s", err, tail(out))
		}
	}
	l := &netlab{t: t, prefix: fmt.Sprintf("fs%d", os.Getpid()%100000)}
	probe := l.prefix + "probe"
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		t.Skipf("cannot create network namespaces here (%v: %s)", err, strings.TrimSpace(string(out)))
	}
	_ = exec.Command("ip", "netns", "del", probe).Run()
	t.Cleanup(l.teardown)
	return l
}

func tail(b []byte) string {
	if len(b) > 600 {
		b = b[len(b)-600:]
	}
	return string(b)
}

// ns returns the full name of namespace short.
func (l *netlab) ns(short string) string { return l.prefix + short }

// run runs a command in namespace short ("" for the test's own), failing
// the test on error.
func (l *netlab) run(short string, args ...string) {
	l.t.Helper()
	if err := l.try(short, args...); err != nil {
		l.t.Fatal(err)
	}
}

func (l *netlab) try(short string, args ...string) error {
	cmd := exec.Command(args[0], args[1:]...)
	if short != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", l.ns(short)}, args...)...)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s in %q: %v: %s", strings.Join(args, " "), short, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (l *netlab) addNS(short string) {
	l.run("", "ip", "netns", "add", l.ns(short))
	l.spaces = append(l.spaces, l.ns(short))
	l.run(short, "ip", "link", "set", "lo", "up")
}

// link joins namespaces a and b with a veth pair named ifA and ifB and
// gives the ends the addresses (CIDR).
func (l *netlab) link(a, ifA, addrA, b, ifB, addrB string) {
	tmpA, tmpB := l.prefix+ifA, l.prefix+ifB // unique in the root namespace while created
	l.run("", "ip", "link", "add", tmpA, "type", "veth", "peer", "name", tmpB)
	l.run("", "ip", "link", "set", tmpA, "netns", l.ns(a))
	l.run("", "ip", "link", "set", tmpB, "netns", l.ns(b))
	l.run(a, "ip", "link", "set", tmpA, "name", ifA)
	l.run(b, "ip", "link", "set", tmpB, "name", ifB)
	l.run(a, "ip", "addr", "add", addrA, "dev", ifA)
	l.run(b, "ip", "addr", "add", addrB, "dev", ifB)
	l.run(a, "ip", "link", "set", ifA, "up")
	l.run(b, "ip", "link", "set", ifB, "up")
}

// build makes the topology: wan, relay, and n laptops each behind a NAT.
func (l *netlab) build(laptops int) {
	l.addNS("wan")
	l.run("wan", "sysctl", "-qw", "net.ipv4.ip_forward=1")
	l.addNS("relay")
	l.link("wan", "w0", "10.201.0.1/24", "relay", "r0", "10.201.0.2/24")
	l.run("relay", "ip", "route", "add", "default", "via", "10.201.0.1")
	for i := 1; i <= laptops; i++ {
		nat, lap := fmt.Sprintf("nat%d", i), fmt.Sprintf("lap%d", i)
		l.addNS(nat)
		l.addNS(lap)
		l.run(nat, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		l.link("wan", fmt.Sprintf("w%d", i), fmt.Sprintf("10.%d.0.1/24", 201+i), nat, "up0", fmt.Sprintf("10.%d.0.2/24", 201+i))
		l.link(nat, "lan0", fmt.Sprintf("192.168.%d.1/24", i), lap, "eth0", fmt.Sprintf("192.168.%d.2/24", i))
		l.run(nat, "ip", "route", "add", "default", "via", fmt.Sprintf("10.%d.0.1", 201+i))
		l.run(lap, "ip", "route", "add", "default", "via", fmt.Sprintf("192.168.%d.1", i))
		// Outbound flows are translated to the router's address; nothing
		// inbound is forwarded to the laptop unless it belongs to one.
		l.run(nat, "nft", "add table ip nat; "+
			"add chain ip nat post { type nat hook postrouting priority 100 ; } ; "+
			"add rule ip nat post oifname up0 masquerade ; "+
			"add table ip filter ; "+
			"add chain ip filter fw_lan { type filter hook forward priority 0 ; policy drop ; } ; "+
			"add rule ip filter fw_lan iifname lan0 accept ; "+
			"add rule ip filter fw_lan ct state established,related accept")
	}
}

// uplink takes laptop i's NAT router off the wan or puts it back (the
// laptop is offline: a border post without its satellite link).
func (l *netlab) uplink(i int, up bool) {
	state := "down"
	if up {
		state = "up"
	}
	l.run(fmt.Sprintf("nat%d", i), "ip", "link", "set", "up0", state)
	if up {
		// Bringing the link up drops its routes: put the default back.
		_ = l.try(fmt.Sprintf("nat%d", i), "ip", "route", "replace", "default", "via", fmt.Sprintf("10.%d.0.1", 201+i))
	}
}

// readdress moves laptop i to another address on its network, as when it
// moves from Wi-Fi to a tether: its open connections are dead.
func (l *netlab) readdress(i int, host int) {
	lap := fmt.Sprintf("lap%d", i)
	l.run(lap, "ip", "addr", "flush", "dev", "eth0")
	l.run(lap, "ip", "addr", "add", fmt.Sprintf("192.168.%d.%d/24", i, host), "dev", "eth0")
	l.run(lap, "ip", "route", "replace", "default", "via", fmt.Sprintf("192.168.%d.1", i))
}

// reachable reports whether a TCP connection from namespace `from` to
// addr succeeds (within 2 s).
func (l *netlab) reachable(from, addr string) bool {
	host, port, _ := strings.Cut(addr, ":")
	return l.try(from, "timeout", "2", "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%s", host, port)) == nil
}

// ifBytes returns the bytes received and sent on an interface of namespace short.
func (l *netlab) ifBytes(short, dev string) (rx, tx uint64) {
	l.t.Helper()
	for _, f := range []struct {
		name string
		v    *uint64
	}{{"rx_bytes", &rx}, {"tx_bytes", &tx}} {
		out, err := exec.Command("ip", "netns", "exec", l.ns(short), "cat", "/sys/class/net/"+dev+"/statistics/"+f.name).Output()
		if err != nil {
			l.t.Fatalf("read %s of %s in %s: %v", f.name, dev, short, err)
		}
		if _, err := fmt.Sscan(string(out), f.v); err != nil {
			l.t.Fatal(err)
		}
	}
	return rx, tx
}

func (l *netlab) teardown() {
	for i := len(l.spaces) - 1; i >= 0; i-- {
		_ = exec.Command("ip", "netns", "del", l.spaces[i]).Run()
	}
}
