package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"fieldsync/agent/api"
	"fieldsync/internal/harness"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run a local mesh of three officers and a relay, partition, edit, heal, and show the conflict",
		Description: "Starts, on 127.0.0.1 with temporary directories, a bureau relay and three officer agents as\n" +
			"separate processes of this binary; writes records in Arabic and English; cuts one officer off;\n" +
			"makes concurrent edits of the same field on both sides; heals; waits until every agent holds the\n" +
			"same state; prints the conflict as `conflicts show` renders it; and cleans up.",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "keep", Usage: "keep the temporary directory (its path is printed)"},
		},
		Action: demoAction,
	}
}

func demoAction(c *cli.Context) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	root, err := os.MkdirTemp("", "fieldsync-demo-")
	if err != nil {
		return err
	}
	out := c.App.Writer
	var cl *harness.Cluster
	defer func() {
		if cl != nil {
			cl.StopAll()
		}
		if c.Bool("keep") {
			fmt.Fprintf(out, "\nkept %s\n", root)
		} else {
			os.RemoveAll(root)
		}
	}()
	fmt.Fprintf(out, "fieldsync demo: a bureau relay and three officers on 127.0.0.1, each a separate agent process\n(working directory %s)\n", root)
	step(out, "setting up: a bureau, a mesh key, four enrolled devices")
	ctx := ctxOf(c)
	if cl, err = harness.New(ctx, exe, root, "OMN"); err != nil {
		return err
	}
	return runDemo(ctx, cl, out)
}

func step(out io.Writer, format string, args ...any) {
	fmt.Fprintf(out, "\n== "+format+"\n", args...)
}

func runDemo(ctx context.Context, cl *harness.Cluster, out io.Writer) error {
	var nodes []*harness.Node
	for _, spec := range []struct {
		name, officer string
		relay         bool
	}{{"relay", "Bureau relay", true}, {"amina", "Amina Haddad", false}, {"boris", "Борис Ветров", false}, {"chen", "Chen Wei", false}} {
		n, err := cl.Add(ctx, spec.name, spec.officer, spec.relay)
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
		fmt.Fprintf(out, "  %-6s %s\n", spec.name, spec.officer)
	}
	relay, amina, boris, chen := nodes[0], nodes[1], nodes[2], nodes[3]

	step(out, "starting the relay and three officer agents (memberlist on 127.0.0.1, profile local)")
	if err := cl.Start(ctx, relay, ""); err != nil {
		return err
	}
	for _, n := range []*harness.Node{amina, boris, chen} {
		if err := cl.Start(ctx, n, "", relay.Bind); err != nil {
			return err
		}
		fmt.Fprintf(out, "  %s joined through the relay at %s\n", n.Name, relay.Bind)
	}

	step(out, "amina creates a case file and records a person and a vehicle")
	var sp api.Space
	if err := cl.CLIJSON(ctx, amina.Dir, &sp, "space", "create", "Case 42 — قضية ٤٢"); err != nil {
		return err
	}
	fmt.Fprintf(out, "  space %s %q\n", sp.ID[:10], sp.Name)
	if _, err := cl.CLI(ctx, amina.Dir, "record", "put", sp.ID, "p1", "name=أمينة حداد", "vehicle=KZ 123 ABC", "place=Алматы market"); err != nil {
		return err
	}
	took, err := harness.WaitUntil(ctx, time.Minute, "boris and chen to see p1", func() (bool, error) {
		for _, n := range []*harness.Node{boris, chen} {
			var r api.Record
			if err := cl.CLIJSON(ctx, n.Dir, &r, "record", "get", sp.ID, "p1"); err != nil {
				return false, err
			}
			if r.Fields["vehicle"].Value != "KZ 123 ABC" {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  boris and chen read p1 after %s (the space key was wrapped to them automatically)\n", took.Round(time.Millisecond))

	step(out, "chen's laptop drops off the mesh (its agent restarts outside it) and everyone keeps working")
	if err := cl.Stop(chen); err != nil {
		return err
	}
	otherMesh := filepath.Join(cl.Root, "other-mesh.key")
	if _, err := cl.CLI(ctx, "", "mesh-key", "new", "--out", otherMesh); err != nil {
		return err
	}
	if err := cl.Start(ctx, chen, otherMesh); err != nil {
		return err
	}
	for _, w := range []struct {
		n    *harness.Node
		args []string
		say  string
	}{
		{amina, []string{"record", "put", sp.ID, "p1", "vehicle=KZ 124 ABC"}, "amina: vehicle = KZ 124 ABC"},
		{chen, []string{"record", "put", sp.ID, "p1", "vehicle=KZ 125 ABC — رأيتها"}, "chen (offline): vehicle = KZ 125 ABC — رأيتها"},
		{boris, []string{"note", "add", sp.ID, "p1", "Видели на границе в 14:10"}, "boris: adds a note"},
	} {
		if _, err := cl.CLI(ctx, w.n.Dir, w.args...); err != nil {
			return err
		}
		fmt.Fprintln(out, "  "+w.say)
	}

	step(out, "chen reconnects; the agents converge by anti-entropy")
	if err := cl.Stop(chen); err != nil {
		return err
	}
	if err := cl.Start(ctx, chen, "", relay.Bind, amina.Bind); err != nil {
		return err
	}
	took, err = harness.WaitUntil(ctx, time.Minute, "every agent to hold the same state", func() (bool, error) {
		return harness.Converged(ctx, sp.ID, amina, boris, chen, relay)
	})
	if err != nil {
		return err
	}
	var dg api.Digest
	if err := cl.CLIJSON(ctx, amina.Dir, &dg, "space", "digest", sp.ID); err != nil {
		return err
	}
	fmt.Fprintf(out, "  converged %s after reconnecting: state digest %s…, %d envelopes (the relay holds the same envelopes and cannot read them)\n",
		took.Round(time.Millisecond), dg.Digest[:16], dg.Count)

	step(out, "the concurrent edits are kept as a conflict, on every officer's laptop — here as boris sees it:")
	show, err := cl.CLI(ctx, boris.Dir, "conflicts", "show", sp.ID, "p1")
	if err != nil {
		return err
	}
	fmt.Fprint(out, indent(show))
	var r api.Record
	if err := cl.CLIJSON(ctx, chen.Dir, &r, "record", "get", sp.ID, "p1"); err != nil {
		return err
	}
	if !r.Fields["vehicle"].Conflict || len(r.Fields["vehicle"].Siblings) != 2 {
		return errors.New("demo: the conflict did not show on chen's laptop")
	}
	step(out, "done: stopping the agents and removing the temporary directory")
	return nil
}

func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("  " + line + "\n")
	}
	return b.String()
}
