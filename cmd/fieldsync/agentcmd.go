package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"fieldsync/agent"
)

func agentFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "bind", Value: "127.0.0.1:7946", Usage: "gossip bind `HOST:PORT`"},
		&cli.StringFlag{Name: "advertise", Usage: "address other nodes reach this one at, `HOST:PORT` (behind address translation)"},
		&cli.StringSliceFlag{Name: "join", Usage: "join the mesh through `HOST:PORT` (repeatable)"},
		&cli.BoolFlag{Name: "relay", Usage: "run as a relay: store and forward without space keys"},
		&cli.StringFlag{Name: "profile", Value: "wan", Usage: "gossip timing `PROFILE`: wan, lan or local (one per mesh)"},
		&cli.StringFlag{Name: "log-level", Value: "info", Usage: "log `LEVEL`: debug, info, warn, error"},
		&cli.StringFlag{Name: "metrics-addr", Usage: "serve Prometheus metrics at http://`HOST:PORT`/metrics (e.g. 127.0.0.1:9464)"},
	}
}

func agentCommand() *cli.Command {
	return &cli.Command{
		Name:  "agent",
		Usage: "run the agent: the store, sync and the local API, under a supervisor",
		Description: "Unlocks the keystore (--passphrase-file, a prompt, or --key-file) and runs the agent's worker\n" +
			"under a supervisor that restarts it after a crash and quarantines the store after a crash loop.\n" +
			"Stop it with SIGINT or SIGTERM.",
		ArgsUsage: " ",
		Flags:     agentFlags(),
		Action:    agentAction,
	}
}

// agentWorkerCommand is the hidden command the supervisor runs as its child;
// it reads the unlock secret from standard input.
func agentWorkerCommand() *cli.Command {
	return &cli.Command{
		Name:      "agent-worker",
		Hidden:    true,
		ArgsUsage: " ",
		Flags:     agentFlags(),
		Action:    agentWorkerAction,
	}
}

func agentAction(c *cli.Context) error {
	if err := needArgs(c, 0, 0, "[--bind HOST:PORT] [--advertise HOST:PORT] [--join HOST:PORT]... [--relay] [--profile wan|lan|local]"); err != nil {
		return err
	}
	if err := checkProfile(c.String("profile")); err != nil {
		return err
	}
	noCoreDumps(c)
	l, err := layoutOf(c)
	if err != nil {
		return err
	}
	if _, err := agent.LoadDevice(l); err != nil {
		return withHint(err, "create the device with `fieldsync init`")
	}
	if _, err := agent.LoadCert(l); errors.Is(err, agent.ErrNotEnrolled) {
		return &exitError{code: agent.ExitNotEnrolled, errCode: "not_enrolled", err: fmt.Errorf("device is not enrolled: no certificate in %s", l.Dir),
			hint: "have the bureau sign the request (`fieldsync enroll`), then `fieldsync cert install cert.json`"}
	} else if err != nil {
		return err
	}
	u, err := unlockOf(c, l)
	if err != nil {
		return err
	}
	// Open the keystore once here, for a clear error before anything starts.
	ks, err := agent.LoadKeystore(l, u)
	if err != nil {
		return unlockError(l, err)
	}
	ks.Zero()
	if _, err := meshKeyOverride(c); err != nil {
		return err
	}
	cfg := agent.DefaultConfig()
	cfg.Layout, cfg.Unlock = l, u
	cfg.Bind, cfg.Advertise, cfg.Join = c.String("bind"), c.String("advertise"), c.StringSlice("join")
	cfg.Relay, cfg.Profile = c.Bool("relay"), c.String("profile")
	if err := cfg.Validate(); err != nil {
		return usageErrorf("agent configuration: %v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %v", err)
	}
	wargs := []string{"--data-dir", l.Dir}
	if p := globalString(c, "mesh-key-file"); p != "" {
		wargs = append(wargs, "--mesh-key-file", p)
	}
	wargs = append(wargs, "agent-worker",
		"--bind", c.String("bind"), "--profile", c.String("profile"), "--log-level", c.String("log-level"))
	if a := c.String("advertise"); a != "" {
		wargs = append(wargs, "--advertise", a)
	}
	for _, j := range c.StringSlice("join") {
		wargs = append(wargs, "--join", j)
	}
	if c.Bool("relay") {
		wargs = append(wargs, "--relay")
	}
	if m := c.String("metrics-addr"); m != "" {
		wargs = append(wargs, "--metrics-addr", m)
	}
	ctx, stop := signal.NotifyContext(ctxOf(c), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := runSupervisor(ctx, agent.SupervisorConfig{
		Exe:        exe,
		WorkerArgs: wargs,
		Unlock:     u,
		Layout:     l,
		Logger:     newLogger(c),
		Stderr:     c.App.ErrWriter,
	})
	if code != 0 {
		return &exitError{code: code, errCode: "agent_exit", err: fmt.Errorf("agent stopped with exit code %d", code),
			hint: agentExitHint(code)}
	}
	return nil
}

func agentExitHint(code int) string {
	switch code {
	case agent.ExitNotEnrolled:
		return "the device has no certificate: `fieldsync cert install cert.json`"
	case agent.ExitLocked:
		return "another agent holds this data directory"
	case agent.ExitQuarantined:
		return "the store was quarantined after repeated crashes: see docs/operations.md (resync from peers, or restore)"
	case agent.ExitKeystore:
		return "the keystore could not be opened: check the passphrase or key file"
	case agent.ExitStore:
		return "the store could not be opened: see the messages above and docs/operations.md"
	}
	return ""
}

func checkProfile(p string) error {
	switch p {
	case "wan", "lan", "local":
		return nil
	}
	return usageErrorf("bad --profile %q: want wan, lan or local", p)
}

// unlockError explains a keystore that does not open.
func unlockError(l agent.Layout, err error) error {
	if errors.Is(err, agent.ErrNotInitialized) {
		return withHint(err, "create the device with `fieldsync init`")
	}
	return keystoreError("keystore", l.Keystore(), err)
}

func newLogger(c *cli.Context) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level}))
}

func agentWorkerAction(c *cli.Context) error {
	noCoreDumps(c)
	l, err := layoutOf(c)
	if err != nil {
		return err
	}
	u, err := agent.ReadWorkerUnlock(c.App.Reader)
	if err != nil {
		return &exitError{code: agent.ExitKeystore, err: fmt.Errorf("worker unlock: %v", err)}
	}
	mk, err := meshKeyOverride(c)
	if err != nil {
		return err
	}
	cfg := agent.DefaultConfig()
	cfg.Layout = l
	cfg.Unlock = u
	cfg.MeshKey = mk
	cfg.Bind = c.String("bind")
	cfg.Advertise = c.String("advertise")
	cfg.Join = c.StringSlice("join")
	cfg.Relay = c.Bool("relay")
	cfg.Profile = c.String("profile")
	cfg.MetricsAddr = c.String("metrics-addr")
	cfg.Logger = newLogger(c)
	chaosConfig(&cfg) // test-only faults and hooks: nothing unless built with -tags fieldsync_chaos
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("agent configuration: %v", err) // exit 1: the supervisor takes 2 for a panic
	}
	ctx, stop := signal.NotifyContext(ctxOf(c), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = runWorker(ctx, cfg)
	if err != nil {
		return &exitError{code: agent.ExitCode(err), errCode: "agent_exit", err: err}
	}
	return nil
}
