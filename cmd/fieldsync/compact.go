package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"fieldsync/agent/api"
)

// compactCommand is `fieldsync compact [--min-age DURATION] [--no-cold] [SPACE]`:
// prune superseded values now and give their disk space back
// (docs/cli.md, "compact"; docs/design.md §7, "Bounded storage").
func compactCommand() *cli.Command {
	return &cli.Command{
		Name:      "compact",
		Usage:     "prune superseded values (a space, or every space) and give their disk space back",
		ArgsUsage: "[SPACE]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "no-cold", Usage: "keep the envelopes cut whole rather than in cold form (to measure what it saves; docs/storage.md)"},
			&cli.DurationFlag{Name: "min-age", Value: -1, Usage: "prune only changes older than `DURATION` by their clock (default: the agent's, 24h)"},
		},
		Action: compactAction,
	}
}

func compactAction(c *cli.Context) error {
	if err := needArgs(c, 0, 1, "[--min-age DURATION] [--no-cold] [SPACE]"); err != nil {
		return err
	}
	req := api.CompactRequest{NoCold: c.Bool("no-cold")}
	if c.NArg() == 1 {
		req.Space = ident(c.Args().Get(0))
	}
	if d := c.Duration("min-age"); d >= 0 {
		s := int64(d / time.Second)
		req.MinAgeSeconds = &s
	} else if c.IsSet("min-age") {
		return usageErrorf("--min-age must not be negative")
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	out, err := cl.Compact(ctxOf(c), req)
	if err != nil {
		return err
	}
	if jsonMode(c) {
		return printJSON(c, out)
	}
	t := newTable("SPACE", "ENVELOPES CUT", "VALUES CUT", "BYTES BEFORE", "BYTES AFTER", "WITHHELD", "COLD", "CHUNKS COLLECTED", "CHUNK BYTES")
	for _, s := range out.Spaces {
		t.add(s.Space, fmt.Sprint(s.Envelopes), fmt.Sprint(s.Values), fmt.Sprint(s.BytesBefore), fmt.Sprint(s.BytesAfter), fmt.Sprint(s.Withheld), fmt.Sprint(s.Frozen),
			fmt.Sprint(s.ChunksCollected), fmt.Sprint(s.ChunkBytesCollected))
	}
	t.write(c.App.Writer)
	if out.Reclaimed {
		fmt.Fprintln(c.App.Writer, "store rewritten: the old versions are gone from its files")
	}
	return nil
}
