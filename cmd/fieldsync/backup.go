package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"fieldsync/agent"
)

func backupCommand() *cli.Command {
	return &cli.Command{
		Name:  "backup",
		Usage: "write a consistent, sealed snapshot of the running agent's store to a file",
		Description: "The running agent takes the snapshot in one read transaction and seals it under this\n" +
			"device's passphrase (or key file): the file reveals nothing without it. Restore it with\n" +
			"`fieldsync restore`, which makes a new incarnation of the device (docs/backup.md).",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Usage: "write the backup to `FILE` (created 0600, never overwritten)"},
		},
		Action: backupAction,
	}
}

func backupAction(c *cli.Context) error {
	if err := needArgs(c, 0, 0, "--out FILE"); err != nil {
		return err
	}
	out := c.String("out")
	if out == "" {
		return usageErrorf("backup needs --out FILE")
	}
	if _, err := os.Lstat(out); err == nil {
		return withHint(fmt.Errorf("%s already exists", out), "backup never overwrites a file; choose another --out")
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("backup file %s: %v", out, err)
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".partial*")
	if err != nil {
		return fmt.Errorf("create backup file: %v", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // gone once renamed
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	info, err := cl.Backup(ctxOf(c), f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return withHint(fmt.Errorf("backup: %w", err), "nothing was written to "+out+"; see the agent's log and try again")
	}
	if r, err := os.Open(tmp); err == nil {
		err = agent.CheckBackupFraming(r)
		r.Close()
		if err != nil {
			return fmt.Errorf("backup written but unreadable: %v", err)
		}
	}
	// Link, not rename: never replace a file that appeared meanwhile.
	if err := os.Link(tmp, out); err != nil {
		return fmt.Errorf("backup file %s: %v", out, err)
	}
	if d, err := os.Open(filepath.Dir(out)); err == nil {
		d.Sync()
		d.Close()
	}
	info.File = out
	if jsonMode(c) {
		return printJSON(c, info)
	}
	kv(c.App.Writer, "backup", out, "device", info.Device, "created", info.Created,
		"entries", fmt.Sprint(info.Entries), "bytes", fmt.Sprint(info.Bytes))
	fmt.Fprintln(c.App.Writer, "sealed under this device's passphrase (or key file): keep both, apart")
	return nil
}
