package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"fieldsync/agent/api"
)

func resolveCommand() *cli.Command {
	return &cli.Command{
		Name:  "resolve",
		Usage: "resolve a conflicted field: exactly the values `conflicts show` prints",
		Description: "Fetches the field's live values as `conflicts show` prints them and resolves exactly those:\n" +
			"a value that arrives later stays a conflict. --pick N takes the N-th value shown (from 1);\n" +
			"--value V gives a new one (@path reads a file).",
		ArgsUsage: "SPACE RECORD FIELD",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "value", Usage: "resolve to `V`"},
			&cli.IntFlag{Name: "pick", Usage: "resolve to the `N`-th value shown by `conflicts show` (from 1)"},
			&cli.StringFlag{Name: "reason", Usage: "why (kept in the history)"},
		},
		Action: resolveAction,
	}
}

func resolveAction(c *cli.Context) error {
	if err := needArgs(c, 3, 3, "[--value V | --pick N] [--reason TEXT] SPACE RECORD FIELD"); err != nil {
		return err
	}
	hasValue, hasPick := c.IsSet("value"), c.IsSet("pick")
	if hasValue == hasPick {
		return usageErrorf("give exactly one of --value V and --pick N")
	}
	a := c.Args()
	ref := api.RecordRef{Space: ident(a.Get(0)), Record: ident(a.Get(1))}
	field := ident(a.Get(2))
	req := api.ResolveRequest{Field: field, Reason: c.String("reason")}
	if hasValue {
		text, b64, err := parseValue(c.String("value"))
		if err != nil {
			return err
		}
		req.Value, req.ValueBase64 = text, b64
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	shown, err := cl.ConflictsShow(ctxOf(c), ref)
	if err != nil {
		return err
	}
	var sibs []api.Sibling
	found := false
	for _, f := range shown.Fields {
		if f.Field == field {
			sibs, found = f.Siblings, true
		}
	}
	if !found || len(sibs) == 0 {
		return withHint(notFoundf("field %s of record %s has no conflict", field, ref.Record),
			"see `fieldsync conflicts show SPACE RECORD`; to change a value use `fieldsync record put`")
	}
	if hasPick {
		n := c.Int("pick")
		if n < 1 || n > len(sibs) {
			return usageErrorf("--pick %d: the field has values 1 to %d", n, len(sibs))
		}
		req.Value, req.ValueBase64 = sibs[n-1].Value, sibs[n-1].ValueBase64
	}
	for _, s := range sibs {
		req.Dots = append(req.Dots, s.Dot)
	}
	// Name the space and record exactly as the agent reported them, so the
	// resolve lands on what was shown.
	req.Space, req.Record = ref.Space, ref.Record
	if shown.Space != "" {
		req.Space = shown.Space
	}
	if shown.Record != "" {
		req.Record = shown.Record
	}
	r, err := cl.Resolve(ctxOf(c), req)
	if err != nil {
		return err
	}
	if jsonMode(c) {
		return printJSON(c, r)
	}
	fmt.Fprintf(c.App.Writer, "resolved %s (%d values) to %s\n\n", escapeText(field), len(sibs), escapeText(shownValue(req.Value, req.ValueBase64)))
	writeRecord(c, r)
	return nil
}
