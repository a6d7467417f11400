package main

import (
	"errors"

	"github.com/urfave/cli/v2"
)

// bundleCommand is a placeholder until the command is built (see the open issues).
func bundleCommand() *cli.Command {
	return &cli.Command{
		Name:   "bundle",
		Usage:  "(not built yet)",
		Hidden: true,
		Action: func(*cli.Context) error { return errors.New("bundle: not built yet") },
	}
}
