package main

import (
	"errors"

	"github.com/urfave/cli/v2"
)

// backupCommand is a placeholder until the command is built (see the open issues).
func backupCommand() *cli.Command {
	return &cli.Command{
		Name:   "backup",
		Usage:  "(not built yet)",
		Hidden: true,
		Action: func(*cli.Context) error { return errors.New("backup: not built yet") },
	}
}
