package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"fieldsync/agent/api"
)

// receiptsCommand is `fieldsync receipts SPACE [RECORD]`: the signed
// delivery receipts held for a space, or for the changes of one record.
func receiptsCommand() *cli.Command {
	return &cli.Command{
		Name:      "receipts",
		Usage:     "show which devices of other bureaus signed receipts for a space's changes, and when",
		ArgsUsage: "SPACE [RECORD]",
		Description: "Lists the delivery receipts held: per range of changes (or, with RECORD, per change of\n" +
			"the record), the receiving device, its bureau and officer, when it signed, and whether the\n" +
			"receipt names envelopes this device holds (valid), not yet held (unverified), or others (invalid).\n" +
			"A space's owning bureau sets whether receipts are written: `fieldsync space receipts SPACE MODE`.",
		Action: receiptsAction,
	}
}

func receiptsAction(c *cli.Context) error {
	if err := needArgs(c, 1, 2, "SPACE [RECORD]"); err != nil {
		return err
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	req := api.ReceiptsRequest{Space: ident(c.Args().Get(0)), Record: ident(c.Args().Get(1))}
	rs, err := cl.Receipts(ctxOf(c), req)
	if err != nil {
		return err
	}
	if rs == nil {
		rs = []api.Receipt{}
	}
	if jsonMode(c) {
		return printJSON(c, rs)
	}
	if len(rs) == 0 {
		fmt.Fprintln(c.App.Writer, "no receipts")
		return nil
	}
	t := newTable("AUTHOR", "SEQ", "RECEIVED BY", "DEVICE", "HLC", "STATUS")
	for _, r := range rs {
		seq := fmt.Sprint(r.FromSeq)
		if r.ToSeq != r.FromSeq {
			seq = fmt.Sprintf("%d-%d", r.FromSeq, r.ToSeq)
		}
		st := r.Status
		if r.Error != "" {
			st += ": " + r.Error
		}
		t.add(shortID(r.Author), seq, officerOf(r.Officer, r.Bureau), shortID(r.Device), r.HLC, st)
	}
	t.write(c.App.Writer)
	return nil
}

// spaceReceipts is `fieldsync space receipts SPACE off|per-change|per-batch`.
func spaceReceipts(c *cli.Context) error {
	if err := needArgs(c, 2, 2, "SPACE off|per-change|per-batch"); err != nil {
		return err
	}
	mode := c.Args().Get(1)
	if _, ok := map[string]bool{api.ReceiptsOff: true, api.ReceiptsPerChange: true, api.ReceiptsPerBatch: true}[mode]; !ok {
		return usageErrorf("receipt policy %q: want off, per-change or per-batch", mode)
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	s, err := cl.SetReceiptPolicy(ctxOf(c), api.ReceiptPolicyRequest{Space: ident(c.Args().Get(0)), Receipts: mode})
	if err != nil {
		return err
	}
	if jsonMode(c) {
		return printJSON(c, s)
	}
	kv(c.App.Writer, "space", s.ID, "name", s.Name, "receipts", s.Receipts)
	return nil
}
