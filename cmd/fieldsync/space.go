package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

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
			{
				Name: "list", Usage: "list the spaces this device holds", ArgsUsage: " ", Action: spaceList,
				Flags: []cli.Flag{&cli.BoolFlag{Name: "erased", Usage: "list the erased spaces (tombstones) instead"}},
			},
			{Name: "digest", Usage: "hashes of a space's state and of its envelopes (equal on converged replicas)", ArgsUsage: "SPACE", Action: spaceDigest},
			{Name: "release", Usage: "release a space to another bureau (owning bureau's devices only)", ArgsUsage: "SPACE BUREAU", Action: spaceBureau("release")},
			{Name: "receipts", Usage: "set whether other bureaus' devices sign delivery receipts: off, per-change or per-batch (owning bureau's devices only)", ArgsUsage: "SPACE off|per-change|per-batch", Action: spaceReceipts},
			{
				Name:      "retention",
				Usage:     "set when the space's records are due for review and for erasure, or off (owning bureau's officers only)",
				ArgsUsage: "SPACE [off]",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "review-after", Usage: "records are due for review `DAYS` after their last review (e.g. 730d)"},
					&cli.StringFlag{Name: "erase-after", Usage: "and due for erasure `DAYS` after it (e.g. 1825d; at least review-after)"},
				},
				Action: spaceRetention,
			},
			{Name: "withdraw", Usage: "withdraw a space from a bureau (wins over a concurrent release)", ArgsUsage: "SPACE BUREAU", Action: spaceBureau("withdraw")},
			{
				Name:      "erase",
				Usage:     "erase a space on every device and relay it reaches, for good (owning bureau's officers only)",
				ArgsUsage: "SPACE",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "reason", Usage: "why (`TEXT`, required; stays on this device, never sent)"},
					&cli.BoolFlag{Name: "yes", Usage: "do not ask for confirmation"},
				},
				Action: spaceErase,
			},
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
	if c.Bool("erased") {
		return spaceListErased(c, cl)
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

func spaceListErased(c *cli.Context, cl *api.Client) error {
	l, err := cl.SpaceErased(ctxOf(c))
	if err != nil {
		return err
	}
	if l == nil {
		l = []api.Erased{}
	}
	if jsonMode(c) {
		return printJSON(c, l)
	}
	if len(l) == 0 {
		fmt.Fprintln(c.App.Writer, "no erased spaces")
		return nil
	}
	writeErased(c, l)
	return nil
}

func writeErased(c *cli.Context, l []api.Erased) {
	t := newTable("ERASED SPACE", "OWNER", "BY DEVICE", "AT", "PURGED", "REASON")
	for _, e := range l {
		t.add(e.Space, e.Owner, e.Author, e.ErasedAt, fmt.Sprint(e.Purged), e.Reason)
	}
	t.write(c.App.Writer)
}

// spaceErase is `space erase SPACE --reason TEXT [--yes]`: it asks for
// confirmation on a terminal unless --yes; without a terminal --yes is
// required (a usage error otherwise).
func spaceErase(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "--reason TEXT [--yes] SPACE"); err != nil {
		return err
	}
	reason := strings.TrimSpace(c.String("reason"))
	if reason == "" {
		return usageErrorf("--reason TEXT is required: say why the space is erased (it stays on this device)")
	}
	ref := ident(c.Args().First())
	cl, err := dial(c)
	if err != nil {
		return err
	}
	if err := confirmErase(c, "a space", fmt.Sprintf("Erase space %s on every device and relay it reaches? It cannot be undone, and no bundle or backup brings it back.", ref)); err != nil {
		return err
	}
	e, err := cl.SpaceErase(ctxOf(c), api.SpaceEraseRequest{Space: ref, Reason: reason})
	if err != nil {
		return err
	}
	if jsonMode(c) {
		return printJSON(c, e)
	}
	writeErased(c, []api.Erased{e})
	return nil
}

// confirmErase asks on a terminal, unless --yes, before an erasure (of
// what: "a space", "a record"); without a terminal --yes is required (a
// usage error otherwise). Not confirming is a failure (exit 1).
func confirmErase(c *cli.Context, what, question string) error {
	if c.Bool("yes") {
		return nil
	}
	f, ok := c.App.Reader.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return usageErrorf("erasing %s cannot be undone: give --yes to confirm (standard input is not a terminal)", what)
	}
	fmt.Fprintf(c.App.ErrWriter, "%s\nType yes to erase: ", question)
	line, _ := bufio.NewReader(f).ReadString('\n')
	if strings.TrimSpace(line) != "yes" {
		return &exitError{code: exitFailure, errCode: codeFailure, err: errors.New("not erased: not confirmed")}
	}
	return nil
}

// recordErase is `record erase --reason TEXT [--yes] SPACE RECORD`.
func recordErase(c *cli.Context) error {
	if err := needArgs(c, 2, 2, "--reason TEXT [--yes] SPACE RECORD"); err != nil {
		return err
	}
	reason := strings.TrimSpace(c.String("reason"))
	if reason == "" {
		return usageErrorf("--reason TEXT is required: say why the record is erased (it stays on this device)")
	}
	ref, rec := ident(c.Args().Get(0)), ident(c.Args().Get(1))
	cl, err := dial(c)
	if err != nil {
		return err
	}
	if err := confirmErase(c, "a record", fmt.Sprintf("Erase record %s of space %s on every device and relay it reaches? It cannot be undone, and no bundle brings it back.", rec, ref)); err != nil {
		return err
	}
	e, err := cl.RecordErase(ctxOf(c), api.RecordEraseRequest{Space: ref, Record: rec, Reason: reason})
	if err != nil {
		return err
	}
	if jsonMode(c) {
		return printJSON(c, e)
	}
	t := newTable("ERASED RECORD", "SPACE", "SEGMENTS", "ENVELOPES", "BY DEVICE", "AT", "REASON")
	t.add(e.Record, e.Space, fmt.Sprint(e.Segments), fmt.Sprint(e.Envelopes), e.Author, e.ErasedAt, e.Reason)
	t.write(c.App.Writer)
	return nil
}
