package main

import (
	"github.com/urfave/cli/v2"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "run the benchmark workloads of BENCH.md",
		Subcommands: []*cli.Command{
			{
				Name:      "w1",
				Usage:     "W1: two officers edit offline, then meet",
				ArgsUsage: " ",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "size", Value: "S", Usage: "`SIZE`: S (10k records) or L (100k)"},
					&cli.StringFlag{Name: "layer", Value: "crdt", Usage: "`LAYER`: crdt (in memory) or agent (two real agents)"},
				},
				Action: benchW1,
			},
			benchWMeshCommand(),
			benchSpreadCommand(),
			benchWritesCommand(),
			benchStorageCommand(),
			benchAnchorsCommand(),
			benchJoinCommand(),
		},
	}
}

func benchW1(c *cli.Context) error {
	if err := needArgs(c, 0, 0, "[--size S|L] [--layer crdt|agent]"); err != nil {
		return err
	}
	size := c.String("size")
	if size != "S" && size != "L" && size != "s" && size != "l" {
		return usageErrorf("bad --size %q: want S or L", size)
	}
	switch c.String("layer") {
	case "crdt":
		return benchW1CRDT(c, size)
	case "agent":
		return benchW1Agent(c, size)
	}
	return usageErrorf("bad --layer %q: want crdt or agent", c.String("layer"))
}
