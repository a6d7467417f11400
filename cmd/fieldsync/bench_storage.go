package main

import (
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"fieldsync/bench/storage"
	"fieldsync/bench/w1"
)

func benchStorageCommand() *cli.Command {
	return &cli.Command{
		Name:      "storage",
		Usage:     "what history costs on disk: W1's records overwritten in full N times, against a fresh store of the final state",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "size", Value: "S", Usage: "`SIZE`: S (10k records) or L (100k)"},
			&cli.IntFlag{Name: "rounds", Value: 10, Usage: "`N` full overwrites after the first write"},
			&cli.BoolFlag{Name: "no-cold", Usage: "compact without the cold form (pruned envelopes kept whole): the figure before it"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "[--size S|L] [--rounds N] [--no-cold]"); err != nil {
				return err
			}
			sz, err := w1.SizeByName(strings.ToUpper(c.String("size")))
			if err != nil {
				return usageErrorf("%v", err)
			}
			if c.Int("rounds") < 1 || c.Int("rounds") > 100 {
				return usageErrorf("--rounds must be between 1 and 100")
			}
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			_, err = storage.Run(ctxOf(c), exe, sz, c.Int("rounds"), c.Bool("no-cold"), c.App.Writer, jsonMode(c))
			return err
		},
	}
}
