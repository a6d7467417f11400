package main

import (
	"strings"

	"github.com/urfave/cli/v2"

	"fieldsync/bench/anchors"
	"fieldsync/bench/w1"
)

func benchAnchorsCommand() *cli.Command {
	return &cli.Command{
		Name:      "anchors",
		Usage:     "BENCH.md's anchors: W1 in memory on Yjs and Automerge (needs Node.js and npm), on the same generated workload",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "size", Value: "S", Usage: "`SIZE`: S (10k records) or L (100k)"},
			&cli.IntFlag{Name: "runs", Value: 3, Usage: "`N` runs of each library (medians are reported)"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "[--size S|L] [--runs N]"); err != nil {
				return err
			}
			sz, err := w1.SizeByName(strings.ToUpper(c.String("size")))
			if err != nil {
				return usageErrorf("%v", err)
			}
			if c.Int("runs") < 1 || c.Int("runs") > 20 {
				return usageErrorf("--runs must be between 1 and 20")
			}
			_, err = anchors.Run(ctxOf(c), sz, c.Int("runs"), c.App.Writer, jsonMode(c))
			return err
		},
	}
}
