package main

import (
	"os"

	"github.com/urfave/cli/v2"

	"fieldsync/bench/wmesh"
)

func benchWMeshCommand() *cli.Command {
	return &cli.Command{
		Name:      "wmesh",
		Usage:     "W-mesh: N agent processes, one writes; time until every agent has it, and idle traffic",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "agents", Value: 10, Usage: "number of agent processes"},
			&cli.IntFlag{Name: "writes", Value: 20, Usage: "writes to time"},
			&cli.DurationFlag{Name: "idle", Value: 10e9, Usage: "idle window for the traffic figure"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "[--agents N] [--writes W] [--idle D]"); err != nil {
				return err
			}
			if c.Int("agents") < 2 || c.Int("agents") > 200 || c.Int("writes") < 1 {
				return usageErrorf("--agents must be 2..200 and --writes at least 1")
			}
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			_, err = wmesh.Run(ctxOf(c), exe, c.Int("agents"), c.Int("writes"), c.Duration("idle"), c.App.Writer, jsonMode(c))
			return err
		},
	}
}
