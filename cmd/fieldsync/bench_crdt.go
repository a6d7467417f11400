package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"fieldsync/bench/w1"
)

// benchW1CRDT runs W1 on the pure crdt package, in memory (bench/w1): it
// prints BENCH.md's table and, with --json, its JSON line.
func benchW1CRDT(c *cli.Context, size string) error {
	sz, err := w1.SizeByName(size)
	if err != nil {
		return usageErrorf("%v", err)
	}
	res, err := w1.RunCRDT(sz, c.App.Writer, jsonMode(c))
	if err != nil {
		return fmt.Errorf("bench w1: %v", err)
	}
	if !res.Converged {
		return fmt.Errorf("bench w1: the two replicas did not converge")
	}
	return nil
}
