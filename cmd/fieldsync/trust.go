package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"fieldsync/agent"
	"fieldsync/crypto"
	"fieldsync/internal/datadir"
)

func trustCommand() *cli.Command {
	return &cli.Command{
		Name:  "trust",
		Usage: "manage the bureau keys this device trusts (trust is never transitive)",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "trust a bureau's public key (`fieldsync bureau export`); adding one already trusted changes nothing",
				ArgsUsage: "BUREAU-PUB-FILE",
				Action:    trustAdd,
			},
			{
				Name:      "list",
				Usage:     "list the trusted bureaus",
				ArgsUsage: " ",
				Action:    trustList,
			},
			{
				Name:      "remove",
				Usage:     "stop trusting a bureau (by fingerprint or a unique prefix of ≥ 6 characters)",
				ArgsUsage: "FINGERPRINT",
				Action:    trustRemove,
			},
		},
	}
}

type trustEntry struct {
	Name        string `json:"name"`
	Fingerprint string `json:"fingerprint"`
	Own         bool   `json:"own"` // the bureau of this device's certificate
}

type trustChange struct {
	trustEntry
	Changed bool `json:"changed"`
}

// ownBureau is the fingerprint of the device certificate's bureau, or "".
func ownBureau(l agent.Layout) string {
	cert, err := datadir.LoadCert(l)
	if err != nil {
		return ""
	}
	return cert.Bureau.Fingerprint()
}

func trustAdd(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "BUREAU-PUB-FILE"); err != nil {
		return err
	}
	path := c.Args().First()
	data, err := readInput(path, "bureau public key")
	if err != nil {
		return err
	}
	bp, err := crypto.ParseBureauPublic(data)
	if err != nil {
		return withHint(fmt.Errorf("%s is not a bureau public key: %v", path, err), "make one with `fieldsync bureau export`")
	}
	l, err := layoutOf(c)
	if err != nil {
		return err
	}
	ts, err := datadir.LoadTrust(l)
	if err != nil {
		return err
	}
	fp := bp.Fingerprint()
	res := trustChange{trustEntry: trustEntry{Name: bp.Name, Fingerprint: fp, Own: fp == ownBureau(l)}}
	if _, ok := ts.Lookup(fp); !ok {
		for _, o := range ts.List() {
			if o.Name == bp.Name {
				fmt.Fprintf(c.App.ErrWriter, "fieldsync: warning: another trusted bureau is also named %s (%s)\n", o.Name, o.Fingerprint())
			}
		}
		ts.Add(bp)
		if err := saveTrust(l, ts); err != nil {
			return err
		}
		res.Changed = true
		noteRestart(c, l, "trust list")
	}
	if jsonMode(c) {
		return printJSON(c, res)
	}
	if res.Changed {
		fmt.Fprintf(c.App.Writer, "trusted bureau %s %s\n", escapeText(bp.Name), fp)
	} else {
		fmt.Fprintf(c.App.Writer, "bureau %s %s is already trusted\n", escapeText(bp.Name), fp)
	}
	return nil
}

func saveTrust(l agent.Layout, ts *crypto.TrustSet) error {
	if err := datadir.SaveTrust(l, ts); err != nil {
		return fmt.Errorf("write trust list: %v", err)
	}
	return nil
}

func trustEntries(l agent.Layout, ts *crypto.TrustSet) []trustEntry {
	own := ownBureau(l)
	out := []trustEntry{}
	for _, b := range ts.List() {
		out = append(out, trustEntry{Name: b.Name, Fingerprint: b.Fingerprint(), Own: b.Fingerprint() == own})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Fingerprint < out[j].Fingerprint
	})
	return out
}

func trustList(c *cli.Context) error {
	if err := needArgs(c, 0, 0, ""); err != nil {
		return err
	}
	l, err := layoutOf(c)
	if err != nil {
		return err
	}
	ts, err := datadir.LoadTrust(l)
	if err != nil {
		return err
	}
	entries := trustEntries(l, ts)
	if jsonMode(c) {
		return printJSON(c, entries)
	}
	if len(entries) == 0 {
		fmt.Fprintln(c.App.Writer, "no trusted bureaus")
		return nil
	}
	t := newTable("BUREAU", "FINGERPRINT", "")
	for _, e := range entries {
		own := ""
		if e.Own {
			own = "own"
		}
		t.add(e.Name, e.Fingerprint, own)
	}
	t.write(c.App.Writer)
	return nil
}

func trustRemove(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "FINGERPRINT"); err != nil {
		return err
	}
	want := strings.ToLower(strings.TrimSpace(c.Args().First()))
	if len(want) < 6 {
		return usageErrorf("fingerprint %q is too short: give at least 6 characters", want)
	}
	l, err := layoutOf(c)
	if err != nil {
		return err
	}
	ts, err := datadir.LoadTrust(l)
	if err != nil {
		return err
	}
	var match []crypto.BureauPublic
	for _, b := range ts.List() {
		if strings.HasPrefix(b.Fingerprint(), want) {
			match = append(match, b)
		}
	}
	switch len(match) {
	case 0:
		return withHint(notFoundf("no trusted bureau has fingerprint %s", want), "see `fieldsync trust list`")
	case 1:
	default:
		var names []string
		for _, m := range match {
			names = append(names, m.Name+" "+m.Fingerprint())
		}
		return usageErrorf("fingerprint prefix %s is ambiguous: %s", want, strings.Join(names, ", "))
	}
	gone := match[0]
	if gone.Fingerprint() == ownBureau(l) {
		return withHint(fmt.Errorf("bureau %s %s issued this device's certificate; removing it would make the device distrust itself", gone.Name, gone.Fingerprint()),
			"install a certificate from another bureau first")
	}
	keep := crypto.NewTrustSet()
	for _, b := range ts.List() {
		if b.Fingerprint() != gone.Fingerprint() {
			keep.Add(b)
		}
	}
	if err := saveTrust(l, keep); err != nil {
		return err
	}
	noteRestart(c, l, "trust list")
	res := trustChange{trustEntry: trustEntry{Name: gone.Name, Fingerprint: gone.Fingerprint()}, Changed: true}
	if jsonMode(c) {
		return printJSON(c, res)
	}
	fmt.Fprintf(c.App.Writer, "no longer trusting bureau %s %s\n", escapeText(gone.Name), gone.Fingerprint())
	return nil
}
