//go:build !unix

package api

import "net"

// alive reports false where a kept connection cannot be checked without
// blocking: each call then opens its own connection.
func alive(net.Conn) bool { return false }
