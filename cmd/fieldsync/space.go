package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"fieldsync/agent/api"
)

func spaceCommand() *cli.Command {
	return &cli.Command{
		Name:  "space",
		Usage: "create and list spaces (shared case files) and change whom they are released to",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create a space owned by this device's bureau; prints the new space",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{
					&cli.StringSliceFlag{Name: "release-to", Usage: "also release it to `BUREAU`s (names or fingerprints, comma-separated or repeated)"},
				},
				Action: spaceCreate,
			},
			{Name: "list", Usage: "list the spaces this device holds", ArgsUsage: " ", Action: spaceList},
			{Name: "digest", Usage: "hashes of a space's state and of its envelopes (equal on converged replicas)", ArgsUsage: "SPACE", Action: spaceDigest},
			{Name: "release", Usage: "release a space to another bureau (owning bureau's devices only)", ArgsUsage: "SPACE BUREAU", Action: spaceBureau("release")},
			{Name: "receipts", Usage: "set whether other bureaus' devices sign delivery receipts: off, per-change or per-batch (owning bureau's devices only)", ArgsUsage: "SPACE off|per-change|per-batch", Action: spaceReceipts},
			{Name: "withdraw", Usage: "withdraw a space from a bureau (wins over a concurrent release)", ArgsUsage: "SPACE BUREAU", Action: spaceBureau("withdraw")},
		},
	}
}

func spaceCreate(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "[--release-to KAZ,TJK] NAME"); err != nil {
		return err
	}
	req := api.SpaceCreateRequest{Name: ident(c.Args().First())}
	if strings.TrimSpace(req.Name) == "" {
		return usageErrorf("empty space name")
	}
	for _, b := range c.StringSlice("release-to") {
		if b = strings.TrimSpace(ident(b)); b != "" {
			req.ReleaseTo = append(req.ReleaseTo, b)
		}
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	s, err := cl.SpaceCreate(ctxOf(c), req)
	if err != nil {
		return err
	}
	if jsonMode(c) {
		return printJSON(c, s)
	}
	writeSpaces(c, []api.Space{s})
	return nil
}

func writeSpaces(c *cli.Context, spaces []api.Space) {
	unreadable := false
	for _, s := range spaces {
		unreadable = unreadable || s.Unreadable > 0
	}
	if !unreadable {
		t := newTable("ID", "NAME", "OWNER", "RELEASED TO")
		for _, s := range spaces {
			t.add(s.ID, s.Name, s.Owner, strings.Join(s.Release, ","))
		}
		t.write(c.App.Writer)
		return
	}
	// Envelopes held that cannot be opened yet: no key for their epoch
	// has reached this device (status lists them too).
	t := newTable("ID", "NAME", "OWNER", "RELEASED TO", "UNREADABLE")
	for _, s := range spaces {
		u := "0"
		if s.Unreadable > 0 {
			u = fmt.Sprintf("%d (from %s)", s.Unreadable, strings.Join(s.UnreadableAuthors, ","))
		}
		t.add(s.ID, s.Name, s.Owner, strings.Join(s.Release, ","), u)
	}
	t.write(c.App.Writer)
}

func spaceList(c *cli.Context) error {
	if err := needArgs(c, 0, 0, ""); err != nil {
		return err
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	spaces, err := cl.SpaceList(ctxOf(c))
	if err != nil {
		return err
	}
	if spaces == nil {
		spaces = []api.Space{}
	}
	if jsonMode(c) {
		return printJSON(c, spaces)
	}
	if len(spaces) == 0 {
		fmt.Fprintln(c.App.Writer, "no spaces yet: create one with `fieldsync space create NAME`")
		return nil
	}
	writeSpaces(c, spaces)
	return nil
}

func spaceDigest(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "SPACE"); err != nil {
		return err
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	d, err := cl.SpaceDigest(ctxOf(c), api.SpaceRef{Space: ident(c.Args().First())})
	if err != nil {
		return err
	}
	if jsonMode(c) {
		return printJSON(c, d)
	}
	kv(c.App.Writer, "space", d.Space, "digest", d.Digest, "envelopes", fmt.Sprintf("%s (%d, %d bytes)", d.Envelopes, d.Count, d.Bytes))
	return nil
}

func spaceBureau(op string) cli.ActionFunc {
	return func(c *cli.Context) error {
		if err := needArgs(c, 2, 2, "SPACE BUREAU"); err != nil {
			return err
		}
		cl, err := dial(c)
		if err != nil {
			return err
		}
		req := api.SpaceBureauRequest{Space: ident(c.Args().Get(0)), Bureau: ident(c.Args().Get(1))}
		var s api.Space
		if op == "release" {
			s, err = cl.SpaceRelease(ctxOf(c), req)
		} else {
			s, err = cl.SpaceWithdraw(ctxOf(c), req)
		}
		if err != nil {
			return err
		}
		if jsonMode(c) {
			return printJSON(c, s)
		}
		writeSpaces(c, []api.Space{s})
		return nil
	}
}
