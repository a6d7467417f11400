package main

import (
	"github.com/urfave/cli/v2"

	"fieldsync/bench/spread"
)

func benchSpreadCommand() *cli.Command {
	return &cli.Command{
		Name:      "spread",
		Usage:     "W-spread: N sync engines in one process (real memberlist and TLS on loopback); one write's spread time, sessions and bytes per node, with fan-out and without",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "agents", Value: 1000, Usage: "number of engines"},
			&cli.IntFlag{Name: "writes", Value: 5, Usage: "writes to time per mode"},
			&cli.StringFlag{Name: "mode", Value: "both", Usage: "fanout (pull from a holder), writer (every node pulls from the writer: before fan-out) or both"},
			&cli.DurationFlag{Name: "interval", Value: 0, Usage: "anti-entropy interval (0: off, so the figures are the hint path alone)"},
			&cli.DurationFlag{Name: "limit", Value: 60e9, Usage: "per write: stop waiting for engines it has not reached"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "[--agents N] [--writes W] [--mode fanout|writer|both]"); err != nil {
				return err
			}
			if c.Int("agents") < 2 || c.Int("agents") > 5000 || c.Int("writes") < 1 {
				return usageErrorf("--agents must be 2..5000 and --writes at least 1")
			}
			switch c.String("mode") {
			case "fanout", "writer", "both":
			default:
				return usageErrorf("--mode must be fanout, writer or both")
			}
			_, err := spread.Run(ctxOf(c), spread.Options{
				Agents: c.Int("agents"), Writes: c.Int("writes"), Mode: c.String("mode"),
				Interval: c.Duration("interval"), Limit: c.Duration("limit"),
			}, c.App.Writer, jsonMode(c))
			return err
		},
	}
}
