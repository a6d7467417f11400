package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"fieldsync/agent/api"
)

func historyCommand() *cli.Command {
	return &cli.Command{
		Name:      "history",
		Usage:     "show who changed a record, when, from which device, re-verifying every signature",
		ArgsUsage: "SPACE RECORD",
		Action:    historyAction,
	}
}

func historyAction(c *cli.Context) error {
	if err := needArgs(c, 2, 2, "SPACE RECORD"); err != nil {
		return err
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	h, err := cl.History(ctxOf(c), recordRef(c))
	if err != nil {
		return err
	}
	if h == nil {
		h = []api.HistoryEntry{}
	}
	if jsonMode(c) {
		return printJSON(c, h)
	}
	if len(h) == 0 {
		fmt.Fprintln(c.App.Writer, "no history")
		return nil
	}
	// Clock skew is this device's observation, kept out of the JSON (which
	// reads the same on every device): mark it here from status.
	if st, err := cl.Status(ctxOf(c)); err == nil {
		skewed := map[string]bool{}
		for _, s := range st.SkewedAuthors {
			skewed[s.Author] = true
		}
		for i := range h {
			h[i].Skewed = skewed[h[i].Author]
		}
	}
	writeHistory(c, h)
	return nil
}

func writeHistory(c *cli.Context, h []api.HistoryEntry) {
	t := newTable("HLC", "OFFICER", "AUTHOR", "SEQ", "SIGNATURE", "CHANGE")
	for _, e := range h {
		sig := e.Signature
		if e.Error != "" {
			sig += ": " + e.Error
		}
		hlc := hlcShown(e.HLC, e.Skewed)
		if len(e.Ops) == 0 {
			what := ""
			switch {
			case e.Outcome == api.OutcomeErased:
				what = "(record erased: its values here were cut)"
			case e.Outcome != "" && e.Outcome != api.OutcomeApplied:
				what = "(" + e.Outcome + ": changed nothing)"
			}
			t.add(hlc, officerOf(e.Officer, e.Bureau), shortID(e.Author), fmt.Sprint(e.Seq), sig, what)
		}
		for i, op := range e.Ops {
			if i == 0 {
				t.add(hlc, officerOf(e.Officer, e.Bureau), shortID(e.Author), fmt.Sprint(e.Seq), sig, opText(op))
			} else {
				t.add("", "", "", "", "", opText(op))
			}
		}
		for _, r := range e.Receipts {
			t.add("", "", "", "", "", fmt.Sprintf("received by %s, device %s, at %s", officerOf(r.Officer, r.Bureau), shortID(r.Device), r.HLC))
		}
	}
	t.write(c.App.Writer)
}

// opText is one operation in words (escaped later, as a table cell).
func opText(op api.HistoryOp) string {
	if op.Pruned { // docs/design.md §7: superseded, its value no longer kept
		op.Value, op.ValueBase64 = "(pruned)", ""
	}
	var b strings.Builder
	switch strings.ReplaceAll(op.Kind, "-", "_") {
	case "put":
		fmt.Fprintf(&b, "put %s = %s", op.Field, shownValue(op.Value, ""))
	case "set_add":
		fmt.Fprintf(&b, "set add %s %s", op.Field, shownValue(op.Value, ""))
	case "set_remove":
		fmt.Fprintf(&b, "set remove %s %s", op.Field, shownValue(op.Value, ""))
	case "note_add":
		fmt.Fprintf(&b, "note %s", shownValue(op.Value, ""))
	case "note_remove":
		fmt.Fprintf(&b, "note removed %s", op.Field)
	case "delete":
		b.WriteString("delete record")
	case "resolve":
		fmt.Fprintf(&b, "resolve %s = %s", op.Field, shownValue(op.Value, ""))
	default:
		fmt.Fprintf(&b, "%s %s %s", op.Kind, op.Field, shownValue(op.Value, ""))
	}
	if len(op.Resolves) > 0 {
		fmt.Fprintf(&b, " (replaces %s)", strings.Join(op.Resolves, ", "))
	}
	if op.Reason != "" {
		fmt.Fprintf(&b, " reason: %s", op.Reason)
	}
	return b.String()
}
