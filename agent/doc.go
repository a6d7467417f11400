// Package agent is the fieldsync daemon: the supervisor, the encrypted and
// self-checking Badger store, the write and apply paths, and the local
// HTTP+JSON API served on a Unix socket. It is the composition root that wires
// crdt, crypto and sync together.
package agent
