package main

import (
	"embed"
	"fmt"

	"github.com/urfave/cli/v2"
)

// completionScripts are the bash and zsh scripts `fieldsync completion`
// prints; both ask fieldsync itself for the candidates
// (--generate-bash-completion), so they follow the command tree.
//
//go:embed completion/fieldsync.bash completion/fieldsync.zsh
var completionScripts embed.FS

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script: bash, zsh or fish",
		ArgsUsage: "bash|zsh|fish",
		Description: "Load it in the current shell with `source <(fieldsync completion bash)` (or zsh), or\n" +
			"`fieldsync completion fish | source`; or install it where the shell looks for completions:\n" +
			"/etc/bash_completion.d/fieldsync, a directory of $fpath as _fieldsync, ~/.config/fish/completions/fieldsync.fish.",
		Action: completionAction,
	}
}

func completionAction(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "bash|zsh|fish"); err != nil {
		return err
	}
	var script string
	switch shell := c.Args().First(); shell {
	case "bash", "zsh":
		b, err := completionScripts.ReadFile("completion/fieldsync." + shell)
		if err != nil {
			return err
		}
		script = string(b)
	case "fish":
		s, err := freshApp(c).ToFishCompletion()
		if err != nil {
			return fmt.Errorf("fish completion: %v", err)
		}
		script = s
	default:
		return usageErrorf("unknown shell %q: want bash, zsh or fish", shell)
	}
	_, err := fmt.Fprint(c.App.Writer, script)
	return err
}

// manCommand prints the man page, generated from the command definitions;
// docs/fieldsync.1 is its output (go generate ./cmd/fieldsync).
//
//go:generate sh -c "go run . man > ../../docs/fieldsync.1"
func manCommand() *cli.Command {
	return &cli.Command{
		Name:        "man",
		Usage:       "print the manual page (roff), generated from the command definitions",
		ArgsUsage:   " ",
		Description: "View it with `fieldsync man | man -l -`, or install it: `fieldsync man > /usr/local/share/man/man1/fieldsync.1`.",
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, ""); err != nil {
				return err
			}
			page, err := freshApp(c).ToManWithSection(1)
			if err != nil {
				return fmt.Errorf("man page: %v", err)
			}
			_, err = fmt.Fprint(c.App.Writer, page)
			return err
		},
	}
}

// freshApp is the command tree to document: not the running app, which has
// given the running command a help subcommand of its own.
func freshApp(c *cli.Context) *cli.App {
	app := newApp(c.App.Reader, c.App.Writer, c.App.ErrWriter)
	app.Setup()
	return app
}
