package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"fieldsync/agent"
)

// diagCliFlags are the global flags a bundle shows: paths and levels only.
// The files they name (passphrases, keys) are never read by diag.
var diagCliFlags = []string{"config", "data-dir", "passphrase-file", "bureau-passphrase-file", "key-file", "mesh-key-file", "log-level", "log-format"}

func diagCommand() *cli.Command {
	return &cli.Command{
		Name:      "diag",
		Usage:     "write a diagnostics bundle for support: versions, config, status, peers, metrics, recent logs (no secrets, no case data)",
		ArgsUsage: " ",
		Description: "Writes one JSON file (format " + agent.DiagFormat + ", docs/metrics.md) that an officer can hand to support.\n" +
			"It holds no key, passphrase or case data: key and passphrase files are never read, the config shows\n" +
			"paths at most, and the agent redacts its logs. With the agent stopped, diag still writes the versions,\n" +
			"config and data-directory facts, and names the sections it could not get.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Usage: "write the bundle to `FILE` (must not exist)"},
		},
		Action: diagAction,
	}
}

func diagAction(c *cli.Context) error {
	if err := needArgs(c, 0, 0, "--out FILE"); err != nil {
		return err
	}
	out := c.String("out")
	if out == "" {
		return usageErrorf("diag needs --out FILE")
	}
	l, err := layoutOf(c)
	if err != nil {
		return err
	}
	cfg := map[string]string{}
	for _, name := range diagCliFlags {
		if v := globalString(c, name); v != "" {
			cfg[name] = v
		}
	}
	b := agent.Diagnose(ctxOf(c), l, cfg)
	data, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return fmt.Errorf("encode bundle: %w", err)
	}
	if err := writeNewFile(out, append(data, '\n'), 0o600); err != nil {
		return err
	}
	var present []string
	for _, s := range agent.DiagSections {
		if _, gone := b.Missing[s]; !gone || s == agent.DiagConfig {
			present = append(present, s)
		}
	}
	// One note per reason, naming the sections it cost.
	byReason := map[string][]string{}
	for s, why := range b.Missing {
		byReason[why] = append(byReason[why], s)
	}
	reasons := make([]string, 0, len(byReason))
	for why := range byReason {
		sort.Strings(byReason[why])
		reasons = append(reasons, why)
	}
	sort.Strings(reasons)
	if jsonMode(c) {
		return printJSON(c, struct {
			Out      string            `json:"out"`
			Format   string            `json:"format"`
			Sections []string          `json:"sections"`
			Missing  map[string]string `json:"missing"`
		}{out, agent.DiagFormat, present, b.Missing})
	}
	fmt.Fprintf(c.App.Writer, "wrote %s (%s): %s\n", out, agent.DiagFormat, strings.Join(present, ", "))
	for _, why := range reasons {
		fmt.Fprintf(c.App.ErrWriter, "fieldsync: note: %s incomplete: %s\n", strings.Join(byReason[why], ", "), why)
	}
	return nil
}
