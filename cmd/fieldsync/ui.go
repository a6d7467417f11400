package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"fieldsync/internal/ui"
)

func uiCommand() *cli.Command {
	return &cli.Command{
		Name:  "ui",
		Usage: "serve a local web view of the running agent (search, records, history, conflicts) on 127.0.0.1",
		Description: "Prints the page's URL, with a token new at each launch, and serves until interrupted.\n" +
			"The view listens on a loopback address only and answers only requests that carry the token (docs/ui.md).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: ui.DefaultListen, Usage: "serve on loopback `HOST:PORT` (port 0: any free port)"},
		},
		Action: uiAction,
	}
}

func uiAction(c *cli.Context) error {
	if err := needArgs(c, 0, 0, ""); err != nil {
		return err
	}
	if err := ui.CheckListen(c.String("listen")); err != nil {
		return usageErrorf("%v", err)
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	srv, err := ui.Listen(cl, c.String("listen"))
	if err != nil {
		return err
	}
	if jsonMode(c) {
		if err := printJSON(c, map[string]string{"url": srv.URL(), "listen": srv.Addr()}); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(c.App.Writer, srv.URL())
		fmt.Fprintln(c.App.ErrWriter, "fieldsync ui: open the URL above in your browser; it holds this launch's token: do not share it. Ctrl-C stops the view.")
	}
	ctx, stop := signal.NotifyContext(ctxOf(c), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return srv.Serve(ctx)
}
