package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"fieldsync/agent/api"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show the device, its peers, unsynced writes, rejections, skewed clocks, gaps and forks",
		ArgsUsage: " ",
		Action:    statusAction,
	}
}

func statusAction(c *cli.Context) error {
	if err := needArgs(c, 0, 0, ""); err != nil {
		return err
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	s, err := cl.Status(ctxOf(c))
	if err != nil {
		return err
	}
	if jsonMode(c) {
		return printJSON(c, s)
	}
	w := c.App.Writer
	pairs := []string{
		"device", s.Device.ID,
		"bureau", s.Device.Bureau,
		"role", s.Device.Role,
		"certificate valid until", s.Device.CertValidUntil,
	}
	if s.Device.CertWarning != "" {
		pairs = append(pairs, "certificate warning", s.Device.CertWarning)
	}
	pairs = append(pairs,
		"unsynced local writes", fmt.Sprintf("%d (held by no peer yet)", s.UnsyncedLocal),
		"rejected", rejectedText(s.Rejected),
		"corrupt values", fmt.Sprint(s.CorruptValues),
	)
	if y := s.Sync; y != nil {
		pairs = append(pairs,
			"sync address", orNone(y.Addr),
			"sync rounds", fmt.Sprintf("%d (%d failed)", y.Rounds, y.RoundErrors),
			"envelopes", fmt.Sprintf("%d sent, %d received, %d duplicates", y.EnvelopesSent, y.EnvelopesAdded, y.Duplicates),
			"sync bytes", fmt.Sprintf("%d in, %d out (gossip %d in, %d out)", y.BytesIn, y.BytesOut, y.GossipBytesIn, y.GossipBytesOut),
			"peer auth failures", fmt.Sprint(y.AuthFailures),
		)
		if y.HeldBackEnvelopes > 0 {
			pairs = append(pairs, "held back by the budget", fmt.Sprintf("%d envelopes, %d bytes, since %s (today %d bytes on the wire)",
				y.HeldBackEnvelopes, y.HeldBackBytes, y.HeldBackSince, y.BudgetDayBytes))
		}
		if y.Mode == "client" {
			pairs = append(pairs, "sync mode", "client (reachable by nobody; streams to its upstreams)")
			for _, u := range y.Upstreams {
				v := fmt.Sprintf("%s since %s, %d streams, %d nudges", u.State, u.Since, u.Streams, u.Nudges)
				if u.LastErr != "" {
					v += "; last error: " + u.LastErr
				}
				pairs = append(pairs, "upstream "+u.Addr, v)
			}
		} else if y.Watchers > 0 {
			pairs = append(pairs, "watching clients", fmt.Sprintf("%d (%d nudges sent)", y.Watchers, y.NudgesSent))
		}
	} else {
		pairs = append(pairs, "sync", "not running")
	}
	if r := s.Retention; r != nil && (r.LastPass != "" || !r.AutoErase) {
		v := "off (agent --no-auto-erase)"
		if r.AutoErase {
			v = fmt.Sprintf("%d records erased, %d failed since start; last pass %s", r.Erased, r.Failed, r.LastPass)
			if r.Held > 0 {
				v += fmt.Sprintf("; %d due by this clock held back: no other device's write dates them due yet (is this clock ahead?)", r.Held)
			}
			if r.Foreign > 0 {
				v += fmt.Sprintf("; %d due left to a person: a device that may not erase wrote in them (see fieldsync review; review lapse --erase)", r.Foreign)
			}
		}
		pairs = append(pairs, "retention erasure", v)
	}
	if s.Version != "" {
		pairs = append(pairs, "version", s.Version)
	}
	kv(w, pairs...)
	if len(s.SkewedAuthors) > 0 {
		fmt.Fprintln(w, "\nskewed clocks")
		t := newTable("AUTHOR", "DRIFT")
		for _, k := range s.SkewedAuthors {
			t.add(k.Author, fmt.Sprintf("%dms", k.DriftMillis))
		}
		t.write(w)
	}
	writeGaps(c, "gaps (withheld or missing ranges)", s.Gaps)
	writeGaps(c, "missing (acknowledged here, absent at open)", s.Missing)
	if len(s.Unreadable) > 0 {
		fmt.Fprintln(w, "\nunreadable (held, no key for their epoch yet: a member holding it wraps it to this device)")
		t := newTable("SPACE", "ENVELOPES", "AUTHORS")
		for _, u := range s.Unreadable {
			t.add(u.Space, fmt.Sprint(u.Envelopes), strings.Join(u.Authors, ","))
		}
		t.write(w)
	}
	if len(s.Forks) > 0 {
		fmt.Fprintln(w, "\nforks (two envelopes for one seq: cloned or compromised device)")
		t := newTable("SPACE", "AUTHOR", "SEQ")
		for _, f := range s.Forks {
			t.add(f.Space, f.Author, fmt.Sprint(f.Seq))
		}
		t.write(w)
	}
	fmt.Fprintln(w)
	writePeers(c, s.Peers)
	return nil
}

func rejectedText(m map[string]int) string {
	if len(m) == 0 {
		return "0"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func writeGaps(c *cli.Context, title string, gaps []api.Gap) {
	if len(gaps) == 0 {
		return
	}
	fmt.Fprintf(c.App.Writer, "\n%s\n", title)
	t := newTable("SPACE", "AUTHOR", "FROM", "TO")
	for _, g := range gaps {
		t.add(g.Space, g.Author, fmt.Sprint(g.From), fmt.Sprint(g.To))
	}
	t.write(c.App.Writer)
}

// orNone shows an empty value as "none".
func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
