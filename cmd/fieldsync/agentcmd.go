package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"fieldsync/agent"
	"fieldsync/internal/datadir"
	"fieldsync/internal/logging"
)

// agentFlags are the flags of `fieldsync agent` (and of the worker it
// runs). Those wrapped by altsrc may also be set in the config file's
// [agent] table; --log-level and --log-format here override the global
// flags of the same name (which the config file sets at its top level).
func agentFlags() []cli.Flag {
	return []cli.Flag{
		altsrc.NewStringFlag(&cli.StringFlag{Name: "bind", EnvVars: []string{"FIELDSYNC_BIND"}, Value: "127.0.0.1:7946", Usage: "gossip bind `HOST:PORT`"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "advertise", EnvVars: []string{"FIELDSYNC_ADVERTISE"}, Usage: "address other nodes reach this one at, `HOST:PORT` (behind address translation)"}),
		altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: "join", EnvVars: []string{"FIELDSYNC_JOIN"}, Usage: "join the mesh through `HOST:PORT` (repeatable)"}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "client", EnvVars: []string{"FIELDSYNC_CLIENT"}, Usage: "client mode, for a laptop nobody can reach (NAT, hotel Wi-Fi, a tether): listen on nothing and keep outbound streams to the --join relays"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "budget-session", EnvVars: []string{"FIELDSYNC_BUDGET_SESSION"}, Usage: "send at most `SIZE` of envelopes per sync round (e.g. 2MiB; small changes first, large values last; 0 = no limit)"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "budget-day", EnvVars: []string{"FIELDSYNC_BUDGET_DAY"}, Usage: "sync bytes per UTC day after which large values wait for the next day (e.g. 50MB; 0 = no limit)"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "attachments", EnvVars: []string{"FIELDSYNC_ATTACHMENTS"}, Value: "all", Usage: "`MODE` all: fetch every attached file's chunks; on-demand: only when `record open` asks (relays always keep all)"}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "detect-nat", EnvVars: []string{"FIELDSYNC_DETECT_NAT"}, Usage: "switch to client mode by itself once peers cannot reach this laptop (they keep declaring it dead)"}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: "keepalive", EnvVars: []string{"FIELDSYNC_KEEPALIVE"}, Usage: "client mode: keepalive `INTERVAL` of an idle stream (default: the profile's, wan 1m)"}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "relay", EnvVars: []string{"FIELDSYNC_RELAY"}, Usage: "run as a relay: store and forward without space keys"}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "no-find", EnvVars: []string{"FIELDSYNC_NO_FIND"}, Usage: "keep no search index (saves its memory; `find` then answers an error)"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "profile", EnvVars: []string{"FIELDSYNC_PROFILE"}, Value: "wan", Usage: "gossip timing `PROFILE`: wan, lan or local (one per mesh)"}),
		&cli.StringFlag{Name: "log-level", Usage: "log `LEVEL`: debug, info, warn, error (default: the global --log-level)"},
		&cli.StringFlag{Name: "log-format", Usage: "log `FORMAT`: text or json (default: the global --log-format)"},
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: "prune-min-age", EnvVars: []string{"FIELDSYNC_PRUNE_MIN_AGE"}, Value: 24 * time.Hour, Usage: "prune superseded values of changes older than `DURATION` by their clock (0: at once; docs/design.md §7)"}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "compact-every", EnvVars: []string{"FIELDSYNC_COMPACT_EVERY"}, Value: 4096, Usage: "run a background pruning pass after `N` changes applied (0: never; `fieldsync compact` still does)"}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "no-auto-erase", EnvVars: []string{"FIELDSYNC_NO_AUTO_ERASE"}, Usage: "never erase records by their space's retention policy on this device (`review` still lists them as erase due)"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "metrics-addr", EnvVars: []string{"FIELDSYNC_METRICS_ADDR"}, Usage: "serve Prometheus metrics at http://`HOST:PORT`/metrics (e.g. 127.0.0.1:9464)"}),
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
		Before:    applyAgentConfig,
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
	logger, flushLog, err := newLoggerChecked(c)
	if err != nil {
		return err
	}
	defer flushLog()
	noCoreDumps(c)
	l, err := layoutOf(c)
	if err != nil {
		return err
	}
	if _, err := agent.LoadDevice(l); err != nil {
		return withHint(err, "create the device with `fieldsync init`")
	}
	if _, err := datadir.LoadCert(l); errors.Is(err, agent.ErrNotEnrolled) {
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
	ks, err := datadir.LoadKeystore(l, u)
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
	cfg.DisableFind = c.Bool("no-find")
	cfg.NoAutoErase = c.Bool("no-auto-erase")
	cfg.Client, cfg.KeepaliveInterval, cfg.DetectNAT = c.Bool("client"), c.Duration("keepalive"), c.Bool("detect-nat")
	if err := budgetFlags(c, &cfg); err != nil {
		return err
	}
	if err := pruneFlags(c, &cfg); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return usageErrorf("agent configuration: %v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %v", err)
	}
	wargs := workerArgs(c, l)
	ctx, stop := signal.NotifyContext(ctxOf(c), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := runSupervisor(ctx, agent.SupervisorConfig{
		Exe:        exe,
		WorkerArgs: wargs,
		Unlock:     u,
		Layout:     l,
		Logger:     logger,
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

// workerArgs are the worker's arguments: every setting resolved here
// (command line, environment, config file, default) is passed explicitly,
// and --config= keeps the worker from reading a config file again, so the
// worker runs with exactly what the supervisor resolved even though it
// inherits the environment.
func workerArgs(c *cli.Context, l agent.Layout) []string {
	level, format := logSettings(c)
	wargs := []string{"--config=", "--data-dir", l.Dir, "--log-level", level, "--log-format", format}
	if p := globalString(c, "mesh-key-file"); p != "" {
		wargs = append(wargs, "--mesh-key-file", p)
	}
	wargs = append(wargs, "agent-worker",
		"--bind", c.String("bind"), "--profile", c.String("profile"),
		"--advertise="+c.String("advertise"), fmt.Sprintf("--relay=%t", c.Bool("relay")), fmt.Sprintf("--no-find=%t", c.Bool("no-find")),
		fmt.Sprintf("--client=%t", c.Bool("client")), fmt.Sprintf("--detect-nat=%t", c.Bool("detect-nat")),
		"--budget-session="+c.String("budget-session"), "--budget-day="+c.String("budget-day"), "--keepalive="+c.Duration("keepalive").String(),
		"--attachments="+c.String("attachments"),
		"--prune-min-age="+c.Duration("prune-min-age").String(), fmt.Sprintf("--compact-every=%d", c.Int("compact-every")),
		fmt.Sprintf("--no-auto-erase=%t", c.Bool("no-auto-erase")),
		"--metrics-addr="+c.String("metrics-addr"))
	for _, j := range c.StringSlice("join") {
		wargs = append(wargs, "--join", j)
	}
	return wargs
}

// logSettings resolves --log-level and --log-format: the agent command's own
// flag if given, else the global flag (command line, environment, config
// file, default).
func logSettings(c *cli.Context) (level, format string) {
	level, format = globalString(c, "log-level"), globalString(c, "log-format")
	if level == "" {
		level = "info"
	}
	if format == "" {
		format = string(logging.FormatText)
	}
	return level, format
}

// newLoggerChecked builds the logger that --log-level and --log-format ask
// for (a usage error names a bad value), writing to stderr through the rate
// limiter; flush reports what the limiter still holds back.
func newLoggerChecked(c *cli.Context) (log *slog.Logger, flush func(), err error) {
	ls, fs := logSettings(c)
	level, err := logging.ParseLevel(ls)
	if err != nil {
		return nil, nil, usageErrorf("bad --log-level: %v", err)
	}
	format, err := logging.ParseFormat(fs)
	if err != nil {
		return nil, nil, usageErrorf("bad --log-format: %v", err)
	}
	log, rl := logging.New(c.App.ErrWriter, logging.Options{Level: level, Format: format})
	flush = func() {}
	if rl != nil {
		flush = func() { rl.Flush(context.Background()) }
	}
	return log, flush, nil
}

// newLogger is newLoggerChecked for commands that log on the side: a bad
// level or format falls back to info and text.
func newLogger(c *cli.Context) *slog.Logger {
	log, _, err := newLoggerChecked(c)
	if err != nil {
		log, _ = logging.New(c.App.ErrWriter, logging.Options{})
	}
	return log
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
	cfg.DisableFind = c.Bool("no-find")
	cfg.NoAutoErase = c.Bool("no-auto-erase")
	cfg.Client, cfg.KeepaliveInterval, cfg.DetectNAT = c.Bool("client"), c.Duration("keepalive"), c.Bool("detect-nat")
	if err := budgetFlags(c, &cfg); err != nil {
		return err
	}
	if err := pruneFlags(c, &cfg); err != nil {
		return err
	}
	cfg.Profile = c.String("profile")
	cfg.MetricsAddr = c.String("metrics-addr")
	logger, flushLog, err := newLoggerChecked(c)
	if err != nil {
		return fmt.Errorf("agent worker: %v", err) // exit 1, as below
	}
	defer flushLog()
	cfg.Logger = logger
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

// budgetFlags reads --budget-session and --budget-day into cfg.Budget, and
// --attachments (what the agent fetches, and when).
func budgetFlags(c *cli.Context, cfg *agent.Config) error {
	var err error
	cfg.Attachments = c.String("attachments")
	if cfg.Budget.SessionBytes, err = parseSize(c.String("budget-session")); err != nil {
		return usageErrorf("--budget-session: %v", err)
	}
	if cfg.Budget.DailyBytes, err = parseSize(c.String("budget-day")); err != nil {
		return usageErrorf("--budget-day: %v", err)
	}
	return nil
}

// parseSize reads a byte count: a whole number with an optional unit, B,
// kB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024). "" is 0.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	i := len(s)
	for i > 0 && (s[i-1] < '0' || s[i-1] > '9') {
		i--
	}
	num, unit := strings.TrimSpace(s[:i]), strings.TrimSpace(s[i:])
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size (e.g. 500kB, 20MiB, 1GB)", s)
	}
	mult := map[string]int64{"": 1, "B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("%q: unknown unit %q (B, kB, MB, GB, KiB, MiB, GiB)", s, unit)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * mult, nil
}

// pruneFlags sets the pruning of superseded values (docs/design.md §7,
// "Bounded storage") from --prune-min-age and --compact-every.
func pruneFlags(c *cli.Context, cfg *agent.Config) error {
	switch d := c.Duration("prune-min-age"); {
	case d < 0:
		return usageErrorf("--prune-min-age must not be negative")
	case d == 0:
		cfg.PruneMinAge = -1 // at once (0 in Config is the default)
	default:
		cfg.PruneMinAge = d
	}
	switch n := c.Int("compact-every"); {
	case n < 0:
		return usageErrorf("--compact-every must not be negative")
	case n == 0:
		cfg.CompactEvery = -1 // never
	default:
		cfg.CompactEvery = n
	}
	return nil
}
