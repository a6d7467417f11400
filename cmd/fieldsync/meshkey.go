package main

import (
	"crypto/rand"
	"fmt"

	"github.com/urfave/cli/v2"

	"fieldsync/agent/api"
	"fieldsync/crypto"
)

func meshKeyCommand() *cli.Command {
	change := func(name, usage, path string) *cli.Command {
		return &cli.Command{
			Name:      name,
			Usage:     usage,
			ArgsUsage: "FILE",
			Action:    func(c *cli.Context) error { return meshKeyChange(c, path) },
		}
	}
	return &cli.Command{
		Name:  "mesh-key",
		Usage: "make and rotate the mesh key that keeps strangers out of the gossip mesh",
		Description: "Rotate a mesh without a partition in three rounds, each done on every device before the next:\n" +
			"`mesh-key add NEW` (accept it), `mesh-key use NEW` (send under it), `mesh-key remove OLD`.\n" +
			"add, use and remove go through the running agent and are sealed into its keystore, so they\n" +
			"survive a restart. An agent started with --mesh-key-file refuses them (the file overrides the keystore).",
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
			{
				Name:      "list",
				Usage:     "show the running agent's mesh keyring (fingerprints, primary first)",
				ArgsUsage: " ",
				Action:    meshKeyList,
			},
			change("add", "accept the mesh key in FILE besides the others (step 1 of a rotation)", api.PathMeshKeyAdd),
			change("use", "send under the mesh key in FILE, already added (step 2)", api.PathMeshKeyUse),
			change("remove", "stop accepting the mesh key in FILE (step 3; not the primary)", api.PathMeshKeyRemove),
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
	k, err := crypto.ParseMeshKeyFile(data)
	if err != nil {
		return err
	}
	fp := crypto.MeshKeyFingerprint(k)
	clear(k)
	if jsonMode(c) {
		return printJSON(c, map[string]string{"file": out, "fingerprint": fp})
	}
	fmt.Fprintf(c.App.Writer, "mesh key %s written to %s (0600); give it to every device of the mesh over a safe channel\n", fp, out)
	return nil
}

func meshKeyList(c *cli.Context) error {
	if err := needArgs(c, 0, 0, ""); err != nil {
		return err
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	kr, err := cl.MeshKeys(ctxOf(c))
	if err != nil {
		return err
	}
	return printKeyring(c, kr, "")
}

func meshKeyChange(c *cli.Context, path string) error {
	if err := needArgs(c, 1, 1, "FILE"); err != nil {
		return err
	}
	file := c.Args().First()
	data, err := readSecretFile(file)
	if err != nil {
		return fmt.Errorf("mesh key file: %v", err)
	}
	key, err := crypto.ParseMeshKeyFile(data)
	clear(data)
	if err != nil {
		return fmt.Errorf("mesh key file %s: %v", file, err)
	}
	defer clear(key)
	cl, err := dial(c)
	if err != nil {
		return err
	}
	kr, err := cl.MeshKeyChange(ctxOf(c), path, key)
	if err != nil {
		return err
	}
	note := "keyring unchanged"
	if kr.Changed {
		note = "keyring changed and saved in the keystore"
	}
	return printKeyring(c, kr, note)
}

func printKeyring(c *cli.Context, kr api.MeshKeyring, note string) error {
	if jsonMode(c) {
		return printJSON(c, kr)
	}
	t := newTable("FINGERPRINT", "ROLE")
	for _, k := range kr.Keys {
		role := "accepted"
		if k.Primary {
			role = "primary (sends)"
		}
		t.add(k.Fingerprint, role)
	}
	t.write(c.App.Writer)
	if kr.Override {
		fmt.Fprintln(c.App.Writer, "note: the agent runs with --mesh-key-file, which overrides the keystore's keyring")
	}
	if note != "" {
		fmt.Fprintln(c.App.Writer, note)
	}
	return nil
}
