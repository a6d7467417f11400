package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// benchW1CRDT runs W1 on the pure crdt package (bench/w1).
func benchW1CRDT(c *cli.Context, size string) error {
	return fmt.Errorf("bench w1 --layer crdt: package bench/w1 is not built yet")
}
