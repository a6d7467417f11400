package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"fieldsync/agent/api"
)

func peersCommand() *cli.Command {
	return &cli.Command{
		Name:      "peers",
		Usage:     "list known peers: state, last contact, changes pending each way",
		ArgsUsage: " ",
		Action:    peersAction,
	}
}

func peersAction(c *cli.Context) error {
	if err := needArgs(c, 0, 0, ""); err != nil {
		return err
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	ps, err := cl.Peers(ctxOf(c))
	if err != nil {
		return err
	}
	if ps == nil {
		ps = []api.PeerInfo{}
	}
	if jsonMode(c) {
		return printJSON(c, ps)
	}
	writePeers(c, ps)
	return nil
}

func writePeers(c *cli.Context, ps []api.PeerInfo) {
	if len(ps) == 0 {
		fmt.Fprintln(c.App.Writer, "no peers")
		return
	}
	t := newTable("PEER", "ADDRESS", "ROLE", "BUREAU", "STATE", "LAST CONTACT", "PENDING OUT", "PENDING IN")
	for _, p := range ps {
		t.add(p.ID, p.Address, p.Role, p.Bureau, p.State, orDash(p.LastContact), fmt.Sprint(p.PendingOut), fmt.Sprint(p.PendingIn))
	}
	t.write(c.App.Writer)
}
