package main

import (
	"github.com/urfave/cli/v2"

	"fieldsync/agent/api"
)

func setCommand() *cli.Command {
	return &cli.Command{
		Name:  "set",
		Usage: "add to or remove from a set field (add wins over a concurrent remove)",
		Subcommands: []*cli.Command{
			{Name: "add", Usage: "add VALUE to the set FIELD of a record", ArgsUsage: "SPACE RECORD FIELD VALUE", Action: setOp("add")},
			{Name: "remove", Usage: "remove VALUE from the set FIELD of a record", ArgsUsage: "SPACE RECORD FIELD VALUE", Action: setOp("remove")},
		},
	}
}

func setOp(op string) cli.ActionFunc {
	return func(c *cli.Context) error {
		if err := needArgs(c, 4, 4, "SPACE RECORD FIELD VALUE"); err != nil {
			return err
		}
		a := c.Args()
		field := ident(a.Get(2))
		if field == "" {
			return usageErrorf("empty field name")
		}
		cl, err := dial(c)
		if err != nil {
			return err
		}
		r, err := cl.SetOp(ctxOf(c), api.SetOpRequest{
			Space: ident(a.Get(0)), Record: ident(a.Get(1)), Field: field, Op: op, Value: a.Get(3),
		})
		if err != nil {
			return err
		}
		if jsonMode(c) {
			return printJSON(c, r)
		}
		writeRecord(c, r)
		return nil
	}
}
