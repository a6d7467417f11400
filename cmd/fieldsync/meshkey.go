package main

import (
	"crypto/rand"
	"fmt"

	"github.com/urfave/cli/v2"

	"fieldsync/crypto"
)

func meshKeyCommand() *cli.Command {
	return &cli.Command{
		Name:  "mesh-key",
		Usage: "make the mesh key that keeps strangers out of the gossip mesh",
		Subcommands: []*cli.Command{
			{
				Name:      "new",
				Usage:     "write a new random mesh key (0600)",
				ArgsUsage: " ",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "out", Usage: "write the key to `FILE` (created 0600, never overwritten)"},
				},
				Action: meshKeyNew,
			},
		},
	}
}

func meshKeyNew(c *cli.Context) error {
	if err := needArgs(c, 0, 0, "--out FILE"); err != nil {
		return err
	}
	out := c.String("out")
	if out == "" {
		return usageErrorf("mesh-key new needs --out FILE")
	}
	data, err := crypto.NewMeshKeyFile(rand.Reader)
	if err != nil {
		return fmt.Errorf("new mesh key: %v", err)
	}
	if err := writeNewFile(out, data, 0o600); err != nil {
		return err
	}
	if jsonMode(c) {
		return printJSON(c, map[string]string{"file": out})
	}
	fmt.Fprintf(c.App.Writer, "mesh key written to %s (0600); give it to every device of the mesh over a safe channel\n", out)
	return nil
}
