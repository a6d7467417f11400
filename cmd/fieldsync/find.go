package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"fieldsync/agent/api"
)

// findValueWidth bounds the VALUE column of `find` (a note can be long);
// --json prints values whole.
const findValueWidth = 60

func findCommand() *cli.Command {
	return &cli.Command{
		Name:  "find",
		Usage: "search the records of the spaces this device can read, across scripts and spellings",
		Description: "Matches names however they were typed: Arabic, Latin or Cyrillic script, with or\n" +
			"without diacritics, in any common transliteration, and with a typo or two\n" +
			"(docs/find.md). Several words are one query; hits are ranked best first.",
		ArgsUsage: "QUERY...",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "space", Usage: "search only `SPACE` (ID, unique prefix or name)"},
			&cli.StringFlag{Name: "field", Usage: "match only the field `NAME` (a register or set; \"notes\" for notes)"},
			&cli.IntFlag{Name: "limit", Value: 10, Usage: "show at most `N` hits (1 to 1000)"},
		},
		Action: findAction,
	}
}

func findAction(c *cli.Context) error {
	if err := needArgs(c, 1, -1, "QUERY..."); err != nil {
		return err
	}
	if n := c.Int("limit"); n < 1 || n > 1000 {
		return usageErrorf("--limit %d: from 1 to 1000", n)
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	req := api.FindRequest{
		Query: strings.Join(c.Args().Slice(), " "),
		Space: ident(c.String("space")),
		Field: ident(c.String("field")),
		Limit: c.Int("limit"),
	}
	res, err := cl.Find(ctxOf(c), req)
	if err != nil {
		return err
	}
	if res.Hits == nil {
		res.Hits = []api.FindHit{}
	}
	if jsonMode(c) {
		return printJSON(c, res)
	}
	if res.Building {
		fmt.Fprintln(c.App.ErrWriter, "note: the search index is still being built since the agent started; hits may be missing")
	}
	if len(res.Hits) == 0 {
		fmt.Fprintf(c.App.Writer, "no match among %d records\n", res.Searched)
		return nil
	}
	t := newTable("SCORE", "SPACE", "RECORD", "FIELD", "VALUE")
	for _, h := range res.Hits {
		field := h.Field
		if h.Kind == "set" {
			field += " (set)"
		}
		t.add(fmt.Sprintf("%.2f", h.Score), h.SpaceName, h.Record, field, clip(h.Value, findValueWidth))
	}
	t.write(c.App.Writer)
	return nil
}

// clip cuts s to at most n runes, marking the cut with "…".
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
