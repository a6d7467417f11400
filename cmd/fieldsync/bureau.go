package main

import (
	"crypto/rand"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"fieldsync/crypto"
)

func bureauCommand() *cli.Command {
	return &cli.Command{
		Name:  "bureau",
		Usage: "create and export bureau authority keys (never kept on an agent)",
		Subcommands: []*cli.Command{
			{
				Name:      "init",
				Usage:     "create a bureau key, sealed with a passphrase; prints its fingerprint",
				ArgsUsage: " ",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "name", Usage: "bureau `NAME`: 2–16 characters A–Z, 0–9, '-' (e.g. OMN)"},
					&cli.StringFlag{Name: "out", Usage: "write the sealed bureau key to `FILE` (created 0600)"},
				},
				Action: bureauInit,
			},
			{
				Name:      "export",
				Usage:     "write the public part of a bureau key, for other bureaus' devices (trust add)",
				ArgsUsage: "BUREAU-FILE",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "out", Usage: "write the public key to `FILE` (default: standard output)"},
				},
				Action: bureauExport,
			},
		},
	}
}

type bureauOut struct {
	Name        string `json:"name"`
	Fingerprint string `json:"fingerprint"`
	File        string `json:"file,omitempty"`
	Public      string `json:"public,omitempty"` // export to stdout under --json: the public key file's text
}

func bureauInit(c *cli.Context) error {
	if err := needArgs(c, 0, 0, "--name NAME --out FILE"); err != nil {
		return err
	}
	noCoreDumps(c)
	name, out := strings.ToUpper(ident(c.String("name"))), c.String("out")
	if name == "" || out == "" {
		return usageErrorf("bureau init needs --name and --out")
	}
	if _, err := os.Lstat(out); err == nil {
		return withHint(fmt.Errorf("%s already exists", out), "a bureau key is never overwritten; choose another --out")
	}
	b, err := crypto.NewBureau(name, rand.Reader)
	if err != nil {
		return usageErrorf("bureau name %q: %v", name, err)
	}
	pass, err := readPassphrase(c, "bureau-passphrase-file", "bureau passphrase", true)
	if err != nil {
		return err
	}
	data, err := crypto.SealBureau(b, pass, kdfParams(c), rand.Reader)
	if err != nil {
		return fmt.Errorf("seal bureau key: %v", err)
	}
	if err := writeNewFile(out, data, 0o600); err != nil {
		return err
	}
	res := bureauOut{Name: b.Public().Name, Fingerprint: b.Public().Fingerprint(), File: out}
	if jsonMode(c) {
		return printJSON(c, res)
	}
	kv(c.App.Writer, "bureau", res.Name, "fingerprint", res.Fingerprint, "key file", res.File)
	fmt.Fprintf(c.App.ErrWriter, "fieldsync: keep %s and its passphrase offline; give devices `fieldsync bureau export` output\n", out)
	return nil
}

// openBureauFile reads and unseals a bureau key file.
func openBureauFile(c *cli.Context, path string) (*crypto.Bureau, error) {
	noCoreDumps(c)
	data, err := readInput(path, "bureau key")
	if err != nil {
		return nil, err
	}
	pass, err := readPassphrase(c, "bureau-passphrase-file", "bureau passphrase", false)
	if err != nil {
		return nil, err
	}
	b, err := crypto.OpenBureau(data, pass)
	if err != nil {
		return nil, keystoreError("bureau key", path, err)
	}
	return b, nil
}

func bureauExport(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "[--out FILE] BUREAU-FILE"); err != nil {
		return err
	}
	b, err := openBureauFile(c, c.Args().First())
	if err != nil {
		return err
	}
	pub := b.Public()
	data := pub.Marshal()
	out := c.String("out")
	if out == "" || out == "-" {
		if jsonMode(c) {
			return printJSON(c, bureauOut{Name: pub.Name, Fingerprint: pub.Fingerprint(), Public: string(data)})
		}
		_, err := c.App.Writer.Write(data)
		return err
	}
	if err := writeNewFile(out, data, 0o644); err != nil {
		return err
	}
	res := bureauOut{Name: pub.Name, Fingerprint: pub.Fingerprint(), File: out}
	if jsonMode(c) {
		return printJSON(c, res)
	}
	kv(c.App.Writer, "bureau", res.Name, "fingerprint", res.Fingerprint, "public key", res.File)
	return nil
}
