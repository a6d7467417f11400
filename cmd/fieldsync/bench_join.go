package main

import (
	"os"

	"github.com/urfave/cli/v2"

	"fieldsync/bench/w1agent"
)

func benchJoinCommand() *cli.Command {
	d := w1agent.DefaultJoinOptions()
	return &cli.Command{
		Name:      "join",
		Usage:     "a new device's first full sync of a space written by many officers (real agents on 127.0.0.1)",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "envelopes", Value: d.Envelopes, Usage: "`N` change envelopes in the space"},
			&cli.IntFlag{Name: "authors", Value: d.Authors, Usage: "`N` officer devices that write them"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "[--envelopes N] [--authors N]"); err != nil {
				return err
			}
			o := w1agent.JoinOptions{Envelopes: c.Int("envelopes"), Authors: c.Int("authors")}
			if o.Authors < 1 || o.Envelopes < o.Authors {
				return usageErrorf("--authors must be at least 1 and --envelopes at least --authors")
			}
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			_, err = w1agent.RunJoin(ctxOf(c), exe, o, c.App.Writer, jsonMode(c))
			return err
		},
	}
}
