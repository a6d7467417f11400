//go:build unix

package api

import (
	"net"
	"syscall"
)

// alive reports whether a kept connection is still open and has nothing
// unread: a peek that must not block finds no data and no end of stream.
// A connection the agent closed (a restart, a shutdown) reads as ended.
func alive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true // never wait for the socket to become readable
	})
	return err == nil && ok
}
