package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"fieldsync/agent"
	"fieldsync/agent/api"
	"fieldsync/internal/datadir"
)

func repairCommand() *cli.Command {
	return &cli.Command{
		Name:      "repair",
		Usage:     "rebuild the materialized state from the stored envelopes (agent stopped)",
		ArgsUsage: " ",
		Action:    repairAction,
	}
}

func repairAction(c *cli.Context) error {
	if err := needArgs(c, 0, 0, ""); err != nil {
		return err
	}
	noCoreDumps(c)
	l, err := layoutOf(c)
	if err != nil {
		return err
	}
	if cl, err := api.Dial(l); err == nil {
		_ = cl
		return withHint(fmt.Errorf("the agent is running on %s", l.Dir), "stop it first (SIGINT or SIGTERM), then run `fieldsync repair`")
	}
	u, err := unlockOf(c, l)
	if err != nil {
		return err
	}
	ks, err := datadir.LoadKeystore(l, u)
	if err != nil {
		return unlockError(l, err)
	}
	ks.Zero()
	mk, err := meshKeyOverride(c)
	if err != nil {
		return err
	}
	cfg := agent.DefaultConfig()
	cfg.Layout = l
	cfg.Unlock = u
	cfg.MeshKey = mk
	cfg.Logger = newLogger(c)
	return runRepair(ctxOf(c), cfg, c.App.Writer)
}
