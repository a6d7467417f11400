package main

import (
	"errors"

	"github.com/urfave/cli/v2"
)

// revokeCommand is a placeholder until the command is built (see the open issues).
func revokeCommand() *cli.Command {
	return &cli.Command{
		Name:   "revoke",
		Usage:  "(not built yet)",
		Hidden: true,
		Action: func(*cli.Context) error { return errors.New("revoke: not built yet") },
	}
}
