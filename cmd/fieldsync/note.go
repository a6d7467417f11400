package main

import (
	"github.com/urfave/cli/v2"

	"fieldsync/agent/api"
)

func noteCommand() *cli.Command {
	return &cli.Command{
		Name:  "note",
		Usage: "append notes to a record (immutable entries)",
		Subcommands: []*cli.Command{
			{
				Name:        "add",
				Usage:       "append a note to a record",
				Description: "TEXT may be @path to read it from a file (@@ for a literal leading @).",
				ArgsUsage:   "SPACE RECORD TEXT",
				Action:      noteAdd,
			},
		},
	}
}

func noteAdd(c *cli.Context) error {
	if err := needArgs(c, 3, 3, "SPACE RECORD TEXT"); err != nil {
		return err
	}
	a := c.Args()
	text, b64, err := parseValue(a.Get(2))
	if err != nil {
		return err
	}
	if b64 != "" {
		return usageErrorf("a note must be UTF-8 text; that file is binary")
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	r, err := cl.NoteAdd(ctxOf(c), api.NoteAddRequest{Space: ident(a.Get(0)), Record: ident(a.Get(1)), Text: text})
	if err != nil {
		return err
	}
	if jsonMode(c) {
		return printJSON(c, r)
	}
	writeRecord(c, r)
	return nil
}
