package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"fieldsync/agent/api"
)

// reviewCommand is `fieldsync review [SPACE]` and its `extend` and `lapse`
// subcommands (issue 16 item 1; docs/cli.md "review").
func reviewCommand() *cli.Command {
	reason := &cli.StringFlag{Name: "reason", Usage: "why (`TEXT`, required; kept in the record's history)"}
	return &cli.Command{
		Name:      "review",
		Usage:     "list the records due for review under their space's retention policy",
		ArgsUsage: "[SPACE]",
		Description: "Lists the records whose last review (or, never reviewed, their oldest live value) is older\n" +
			"than their space's review-after, by the agent's clock: record, space, age, due since, and\n" +
			"erase_due once older than erase-after. The owning bureau sets the policy with\n" +
			"`fieldsync space retention SPACE --review-after 730d --erase-after 1825d`.",
		Action: reviewList,
		// A group's own flags: prepareCommand adds --json to leaves only.
		Flags: []cli.Flag{jsonFlag()},
		Subcommands: []*cli.Command{
			{Name: "extend", Usage: "mark a record reviewed and kept; restarts its review clock", ArgsUsage: "SPACE RECORD", Flags: []cli.Flag{reason}, Action: reviewAction(false)},
			{
				Name: "lapse", Usage: "let a record lapse: it is deleted, the reason kept in its history (its past values are erased everywhere only with --erase)",
				ArgsUsage: "SPACE RECORD",
				Flags: []cli.Flag{reason,
					&cli.BoolFlag{Name: "erase", Usage: "also erase the record everywhere it reaches, as `record erase` (owning bureau's officers only; cannot be undone)"},
					&cli.BoolFlag{Name: "yes", Usage: "with --erase: do not ask for confirmation"},
				},
				Action: reviewAction(true),
			},
		},
	}
}

func reviewList(c *cli.Context) error {
	if err := needArgs(c, 0, 1, "[SPACE]"); err != nil {
		return err
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	ds, err := cl.Review(ctxOf(c), api.ReviewRequest{Space: ident(c.Args().Get(0))})
	if err != nil {
		return err
	}
	if ds == nil {
		ds = []api.ReviewDue{}
	}
	if jsonMode(c) {
		return printJSON(c, ds)
	}
	if len(ds) == 0 {
		fmt.Fprintln(c.App.Writer, "no records due for review")
		return nil
	}
	t := newTable("RECORD", "SPACE", "AGE", "DUE SINCE", "ERASE DUE")
	for _, d := range ds {
		erase := "no"
		if d.EraseDue {
			erase = "yes"
		}
		t.add(d.Record, shortID(d.Space), fmt.Sprintf("%dd", d.AgeDays), d.DueSince, erase)
	}
	t.write(c.App.Writer)
	return nil
}

func reviewAction(lapse bool) cli.ActionFunc {
	return func(c *cli.Context) error {
		if err := needArgs(c, 2, 2, "--reason TEXT SPACE RECORD"); err != nil {
			return err
		}
		if c.String("reason") == "" {
			return usageErrorf("--reason is required: it is kept in the record's history")
		}
		cl, err := dial(c)
		if err != nil {
			return err
		}
		req := api.ReviewActionRequest{Space: ident(c.Args().Get(0)), Record: ident(c.Args().Get(1)), Reason: c.String("reason")}
		if lapse && c.Bool("erase") {
			req.Erase = true
			if err := confirmErase(c, "a record", fmt.Sprintf("Record %s lapses and is erased on every device and relay it reaches; this cannot be undone.", req.Record)); err != nil {
				return err
			}
		}
		var r api.Record
		if lapse {
			r, err = cl.ReviewLapse(ctxOf(c), req)
		} else {
			r, err = cl.ReviewExtend(ctxOf(c), req)
		}
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

// parseDays reads a retention duration: N or Nd, in days.
func parseDays(flag, s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSuffix(s, "d"))
	if err != nil || n <= 0 {
		return 0, usageErrorf("--%s %q: want a number of days such as 730d", flag, s)
	}
	return n, nil
}

// spaceRetention is `fieldsync space retention SPACE --review-after Nd
// [--erase-after Md]` or `fieldsync space retention SPACE off`.
func spaceRetention(c *cli.Context) error {
	if err := needArgs(c, 1, 2, "SPACE [off]"); err != nil {
		return err
	}
	req := api.RetentionPolicyRequest{Space: ident(c.Args().Get(0))}
	switch {
	case c.Args().Len() == 2 && c.Args().Get(1) == "off":
		if c.IsSet("review-after") || c.IsSet("erase-after") {
			return usageErrorf("give off or --review-after, not both")
		}
		req.Off = true
	case c.Args().Len() == 2:
		return usageErrorf("unexpected %q: want off or --review-after", c.Args().Get(1))
	case !c.IsSet("review-after"):
		return usageErrorf("give --review-after DAYS (and optionally --erase-after DAYS), or off")
	default:
		var err error
		if req.ReviewAfterDays, err = parseDays("review-after", c.String("review-after")); err != nil {
			return err
		}
		if c.IsSet("erase-after") {
			if req.EraseAfterDays, err = parseDays("erase-after", c.String("erase-after")); err != nil {
				return err
			}
		}
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	s, err := cl.SetRetentionPolicy(ctxOf(c), req)
	if err != nil {
		return err
	}
	if jsonMode(c) {
		return printJSON(c, s)
	}
	review, erase := "off", "-"
	if s.Retention != nil {
		review = fmt.Sprintf("%dd", s.Retention.ReviewAfterDays)
		if s.Retention.EraseAfterDays > 0 {
			erase = fmt.Sprintf("%dd", s.Retention.EraseAfterDays)
		}
	}
	kv(c.App.Writer, "space", s.ID, "name", s.Name, "review after", review, "erase after", erase)
	return nil
}
