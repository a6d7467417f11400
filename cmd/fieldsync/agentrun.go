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

// runWorker opens the store and serves; agent.RunWorker also tells the
// supervisor when the store is open, so a crash while opening is not retried
// in a loop, and turns core dumps off while keys are held. A variable only so
// that a build with -tags fieldsync_chaos can run the agent with its
// test-only hooks (chaos_on.go); the shipped build never changes it.
var runWorker = agent.RunWorker

func runRepair(ctx context.Context, cfg agent.Config, out io.Writer) error {
	return agent.Repair(ctx, cfg, out)
}
