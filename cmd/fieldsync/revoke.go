package main

import (
	"encoding/base64"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"fieldsync/agent/api"
	"fieldsync/crypto"
)

func revokeCommand() *cli.Command {
	return &cli.Command{
		Name:  "revoke",
		Usage: "revoke a device (a lost or stolen laptop): its changes past the cut-offs are refused everywhere",
		Description: "Runs through a running agent, which fills in, for each space, the last seq it holds of the\n" +
			"device (a space where it holds none gets 0); --cutoff SPACE:SEQ sets one explicitly and\n" +
			"--cutoff '*:0' revokes everything the device ever wrote. The bureau key signs the revocation\n" +
			"here (it never reaches the agent); the agent stores it, cuts what the device wrote past the\n" +
			"cut-offs, and sync, relays and bundles spread it. The next officer who writes in each affected\n" +
			"space starts a new epoch key that the revoked device never gets. Rotate the mesh key\n" +
			"afterwards (docs/operations.md).",
		ArgsUsage: "DEVICE",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "bureau-key", Usage: "the device's bureau key `FILE`"},
			&cli.StringSliceFlag{Name: "cutoff", Usage: "keep the device's changes up to `SPACE:SEQ` (repeatable; '*:0' revokes everything)"},
		},
		Action: revokeAction,
	}
}

func revokeAction(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "--bureau-key FILE [--cutoff SPACE:SEQ]... DEVICE"); err != nil {
		return err
	}
	bureauKey := c.String("bureau-key")
	if bureauKey == "" {
		return usageErrorf("revoke needs --bureau-key FILE (the revoked device's bureau)")
	}
	for _, co := range c.StringSlice("cutoff") {
		if i := strings.LastIndexByte(co, ':'); i <= 0 || i == len(co)-1 {
			return usageErrorf("bad --cutoff %q: want SPACE:SEQ, or '*:0'", co)
		}
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	var plan api.RevokePlan
	if err := cl.Call(ctxOf(c), api.PathRevokePrepare, api.RevokePrepareRequest{Device: c.Args().First(), Cutoffs: c.StringSlice("cutoff")}, &plan); err != nil {
		return err
	}
	b, err := openBureauFile(c, bureauKey)
	if err != nil {
		return err
	}
	defer b.Zero()
	if fp := b.Public().Fingerprint(); fp != plan.Bureau {
		return fmt.Errorf("device %s belongs to bureau %s, but %s holds the key of bureau %s (%s): only its own bureau can revoke it",
			plan.Device, plan.Bureau, bureauKey, b.Public().Name, fp)
	}
	dev, err := crypto.ParseDeviceID(plan.Device)
	if err != nil {
		return fmt.Errorf("agent returned a bad device ID: %v", err)
	}
	cutoffs := map[crypto.SpaceID]uint64{}
	for s, seq := range plan.Cutoffs {
		id, err := crypto.ParseSpaceID(s)
		if err != nil {
			return fmt.Errorf("agent returned a bad space ID: %v", err)
		}
		cutoffs[id] = seq
	}
	rev, err := b.Revoke(dev, cutoffs, plan.DefaultCutoff, time.Now())
	if err != nil {
		return err
	}
	var res api.RevokeResult
	if err := cl.Call(ctxOf(c), api.PathRevoke, api.RevokeSubmitRequest{Revocation: base64.StdEncoding.EncodeToString(rev.Marshal())}, &res); err != nil {
		return err
	}
	if jsonMode(c) {
		return printJSON(c, res)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "revoked device %s (%s)\n", res.Device, plan.Role)
	spaces := make([]string, 0, len(res.Cutoffs))
	for s := range res.Cutoffs {
		spaces = append(spaces, s)
	}
	sort.Strings(spaces)
	t := newTable("SPACE", "KEEPS SEQS")
	for _, s := range spaces {
		t.add(s, fmt.Sprintf("1..%d", res.Cutoffs[s]))
	}
	other := "none"
	if res.Default > 0 {
		other = fmt.Sprintf("1..%d", res.Default)
	}
	t.add("(every other space)", other)
	t.write(w)
	for _, d := range res.Dropped {
		fmt.Fprintf(w, "removed its seqs %d..%d in space %s (past the cut-off)\n", d.From, d.To, d.Space)
	}
	fmt.Fprintln(w, "the revocation spreads through sync, relays and bundles; rotate the mesh key next (docs/operations.md)")
	return nil
}
