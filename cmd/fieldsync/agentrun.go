package main

import (
	"context"
	"io"

	"fieldsync/agent"
)

// runSupervisor and runWorker are the two calls into the agent's lifecycle,
// kept in one small file.
func runSupervisor(ctx context.Context, sc agent.SupervisorConfig) int {
	return agent.RunSupervisor(ctx, sc)
}

func runWorker(ctx context.Context, cfg agent.Config) error {
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

func runRepair(ctx context.Context, cfg agent.Config, out io.Writer) error {
	return agent.Repair(ctx, cfg, out)
}
