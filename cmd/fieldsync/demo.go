package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run a local mesh of agents and show convergence and a conflict",
		Action: func(c *cli.Context) error {
			// Placeholder until sync exists (issue 5): the demo will start three
			// officers and a relay on loopback, partition, edit, heal and converge.
			fmt.Fprintln(c.App.Writer, "fieldsync demo: not built yet — the mesh demo arrives with sync (issue 5)")
			return nil
		},
	}
}
