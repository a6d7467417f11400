package main

import (
	"errors"

	"github.com/urfave/cli/v2"
)

// completionCommand is a placeholder until the command is built (see the open issues).
func completionCommand() *cli.Command {
	return &cli.Command{
		Name:   "completion",
		Usage:  "(not built yet)",
		Hidden: true,
		Action: func(*cli.Context) error { return errors.New("completion: not built yet") },
	}
}
