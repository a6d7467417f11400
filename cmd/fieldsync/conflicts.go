package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"fieldsync/agent/api"
)

func conflictsCommand() *cli.Command {
	return &cli.Command{
		Name:  "conflicts",
		Usage: "list and show fields with concurrent values",
		Subcommands: []*cli.Command{
			{Name: "list", Usage: "list conflicted fields, of one space or of all", ArgsUsage: "[SPACE]", Action: conflictsList},
			{Name: "show", Usage: "show every value of a record's conflicted fields, numbered for `resolve --pick`", ArgsUsage: "SPACE RECORD", Action: conflictsShow},
		},
	}
}

func conflictsList(c *cli.Context) error {
	if err := needArgs(c, 0, 1, "[SPACE]"); err != nil {
		return err
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	cs, err := cl.ConflictsList(ctxOf(c), api.ConflictsListRequest{Space: ident(c.Args().First())})
	if err != nil {
		return err
	}
	if cs == nil {
		cs = []api.Conflict{}
	}
	if jsonMode(c) {
		return printJSON(c, cs)
	}
	if len(cs) == 0 {
		fmt.Fprintln(c.App.Writer, "no conflicts")
		return nil
	}
	t := newTable("SPACE", "RECORD", "FIELD", "#", "VALUE", "OFFICER", "AUTHOR", "HLC")
	for _, cf := range cs {
		for i, s := range cf.Siblings {
			sp, rec, f := "", "", ""
			if i == 0 {
				sp, rec, f = cf.Space, cf.Record, cf.Field
			}
			t.add(sp, rec, f, fmt.Sprint(i+1), siblingValue(s), officerOf(s.Officer, s.Bureau), shortID(s.Author), hlcShown(s.HLC, s.Skewed))
		}
	}
	t.write(c.App.Writer)
	return nil
}

func conflictsShow(c *cli.Context) error {
	if err := needArgs(c, 2, 2, "SPACE RECORD"); err != nil {
		return err
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	cs, err := cl.ConflictsShow(ctxOf(c), recordRef(c))
	if err != nil {
		return err
	}
	if cs.Fields == nil {
		cs.Fields = []api.ConflictField{}
	}
	if jsonMode(c) {
		return printJSON(c, cs)
	}
	writeConflictsShow(c, cs)
	// Clock skew is this device's observation, so it is not in the JSON
	// (which must read the same on every device): the table notes it.
	if st, err := cl.Status(ctxOf(c)); err == nil {
		noteSkew(c.App.Writer, cs, st.SkewedAuthors)
	}
	return nil
}

// noteSkew names the authors of shown siblings whose clocks this device
// saw running ahead by more than the drift limit (docs/design.md §3.4).
func noteSkew(w io.Writer, cs api.ConflictsShow, skewed []api.Skew) {
	drift := map[string]int64{}
	for _, s := range skewed {
		drift[s.Author] = s.DriftMillis
	}
	seen := map[string]bool{}
	for _, f := range cs.Fields {
		for _, s := range f.Siblings {
			if d, ok := drift[s.Author]; ok && !seen[s.Author] {
				seen[s.Author] = true
				fmt.Fprintf(w, "note: %s's clock ran %s ahead of this device's: its HLC times are not wall-clock times\n", shortID(s.Author), time.Duration(d)*time.Millisecond)
			}
		}
	}
}

func writeConflictsShow(c *cli.Context, cs api.ConflictsShow) {
	w := c.App.Writer
	kv(w, "space", cs.Space, "record", cs.Record)
	writeResolutions(w, cs.Resolved)
	if len(cs.Fields) == 0 {
		fmt.Fprintln(w, "no conflicts in this record")
		return
	}
	for _, f := range cs.Fields {
		fmt.Fprintf(w, "\nfield %s: %d values\n", escapeText(f.Field), len(f.Siblings))
		t := newTable("#", "VALUE", "OFFICER", "AUTHOR", "HLC", "DOT")
		for i, s := range f.Siblings {
			t.add(fmt.Sprint(i+1), siblingValue(s), officerOf(s.Officer, s.Bureau), shortID(s.Author), hlcShown(s.HLC, s.Skewed), s.Dot)
		}
		t.write(w)
		for i, s := range f.Siblings {
			if s.Resolution != nil {
				fmt.Fprintf(w, "  #%d is itself a resolution: %s\n", i+1, resolutionText(s))
			}
		}
	}
	fmt.Fprintf(w, "\nresolve with `fieldsync resolve --pick N [--reason TEXT] %s %s FIELD` (or --value V)\n", escapeText(cs.Space), escapeText(cs.Record))
}

// writeResolutions prints who resolved which fields: the accountable trail
// of resolutions across bureaus.
func writeResolutions(w io.Writer, fields []api.ResolvedField) {
	for _, f := range fields {
		for _, s := range f.Siblings {
			fmt.Fprintf(w, "field %s resolved to %s: %s\n", escapeText(f.Field), siblingValue(s), resolutionText(s))
		}
	}
}

func resolutionText(s api.Sibling) string {
	txt := fmt.Sprintf("by %s, device %s, at %s, replacing %s", officerOf(s.Officer, s.Bureau), shortID(s.Author), s.HLC, strings.Join(s.Resolution.Resolves, ", "))
	if s.Resolution.Reason != "" {
		txt += fmt.Sprintf(" — reason: %s", escapeText(s.Resolution.Reason))
	}
	return txt
}
