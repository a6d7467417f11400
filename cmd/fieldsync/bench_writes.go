package main

import (
	"os"

	"github.com/urfave/cli/v2"

	"fieldsync/bench/writes"
)

func benchWritesCommand() *cli.Command {
	d := writes.DefaultOptions()
	return &cli.Command{
		Name:      "writes",
		Usage:     "durable writes: the raw fsync'd-commit rate, then one agent with 1 and with 32 API clients",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "duration", Value: d.Duration, Usage: "bound of each phase"},
			&cli.IntFlag{Name: "count", Value: d.Count, Usage: "bound of the writes of each phase"},
			&cli.StringFlag{Name: "mix", Value: d.Mix, Usage: "what the clients write: `records` (each its own records of one space), record (one shared record) or spaces (each its own space)"},
			&cli.StringFlag{Name: "cpuprofile", Usage: "`FILE` `FILE`.1 and `FILE`.32 receive the agent's CPU profiles of the two phases"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "[--duration D] [--count N] [--mix records|record|spaces] [--cpuprofile FILE]"); err != nil {
				return err
			}
			o := d
			o.Duration, o.Count, o.Mix, o.CPUProfile = c.Duration("duration"), c.Int("count"), c.String("mix"), c.String("cpuprofile")
			if o.Duration <= 0 || o.Count < 1 {
				return usageErrorf("--duration must be positive and --count at least 1")
			}
			if o.Mix != writes.MixRecords && o.Mix != writes.MixRecord && o.Mix != writes.MixSpaces {
				return usageErrorf("--mix must be records, record or spaces")
			}
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			_, err = writes.Run(ctxOf(c), exe, o, c.App.Writer, jsonMode(c))
			return err
		},
	}
}
