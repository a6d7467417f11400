package main

import (
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"fieldsync/bench/w1"
	"fieldsync/bench/w1agent"
)

// benchW1Agent runs W1 on two real agents started from this binary.
func benchW1Agent(c *cli.Context, size string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	sz, err := w1.SizeByName(strings.ToUpper(size))
	if err != nil {
		return usageErrorf("%v", err)
	}
	_, err = w1agent.Run(ctxOf(c), exe, sz, c.App.Writer, jsonMode(c))
	return err
}
