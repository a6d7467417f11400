package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"fieldsync/agent/api"
)

// maxValueFile bounds a FIELD=@path file; the agent enforces the configured
// value limit (24 MiB by default) itself.
const maxValueFile = 32 << 20

func recordCommand() *cli.Command {
	return &cli.Command{
		Name:  "record",
		Usage: "write, read, list and delete records",
		Subcommands: append([]*cli.Command{
			{
				Name:  "put",
				Usage: "write register fields of a record (creating it if needed)",
				Description: "VALUE is text; @path reads a file (text if valid UTF-8, else binary);\n" +
					"write @@ for a value that starts with a literal @.",
				ArgsUsage: "SPACE RECORD FIELD=VALUE...",
				Action:    recordPut,
			},
			{
				Name:      "new",
				Usage:     "create a record with a generated ID; prints the ID",
				ArgsUsage: "SPACE FIELD=VALUE...",
				Action:    recordNew,
			},
			{Name: "get", Usage: "show a record: every field with all its live values, sets and notes", ArgsUsage: "SPACE RECORD", Action: recordGet},
			{Name: "list", Usage: "list a space's records", ArgsUsage: "SPACE", Action: recordList},
			{Name: "delete", Usage: "delete a record (an edit made concurrently survives as a conflict)", ArgsUsage: "SPACE RECORD", Action: recordDelete},
			{
				Name:      "erase",
				Usage:     "erase a record's every version on every device and relay it reaches, for good (owning bureau's officers only)",
				ArgsUsage: "SPACE RECORD",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "reason", Usage: "why (`TEXT`, required; stays on this device, never sent)"},
					&cli.BoolFlag{Name: "yes", Usage: "do not ask for confirmation"},
				},
				Action: recordErase,
			},
		}, recordAttachCommands()...),
	}
}

// parseValue turns a command-line VALUE into text or base64: "@path" reads
// a file, "@@..." is a literal "@...".
func parseValue(v string) (text, b64 string, err error) {
	if strings.HasPrefix(v, "@@") {
		return v[1:], "", nil
	}
	if !strings.HasPrefix(v, "@") {
		return v, "", nil
	}
	path := v[1:]
	if path == "" {
		return "", "", usageErrorf("empty file name in @ value (write @@ for a literal @)")
	}
	data, err := readBounded(path, maxValueFile)
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", &exitError{code: exitFailure, err: fmt.Errorf("value file %s: no such file", path), hint: "write @@ for a value that starts with a literal @"}
	}
	if err != nil {
		return "", "", fmt.Errorf("value file %s: %v", path, err)
	}
	if utf8.Valid(data) {
		return string(data), "", nil
	}
	return "", base64.StdEncoding.EncodeToString(data), nil
}

// parseFields parses FIELD=VALUE arguments.
func parseFields(args []string) ([]api.FieldValue, error) {
	var out []api.FieldValue
	seen := map[string]bool{}
	for _, a := range args {
		name, val, ok := strings.Cut(a, "=")
		if !ok {
			return nil, usageErrorf("%q is not FIELD=VALUE", a)
		}
		name = ident(name)
		if strings.TrimSpace(name) == "" {
			return nil, usageErrorf("%q has an empty field name", a)
		}
		if seen[name] {
			return nil, usageErrorf("field %q given twice", name)
		}
		seen[name] = true
		text, b64, err := parseValue(val)
		if err != nil {
			return nil, err
		}
		out = append(out, api.FieldValue{Name: name, Value: text, ValueBase64: b64})
	}
	return out, nil
}

func recordPut(c *cli.Context) error {
	if err := needArgs(c, 3, -1, "SPACE RECORD FIELD=VALUE..."); err != nil {
		return err
	}
	args := c.Args().Slice()
	fields, err := parseFields(args[2:])
	if err != nil {
		return err
	}
	rec := ident(args[1])
	if rec == "" {
		return usageErrorf("empty record ID")
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	r, err := cl.RecordPut(ctxOf(c), api.RecordPutRequest{Space: ident(args[0]), Record: rec, Fields: fields})
	if err != nil {
		return err
	}
	if jsonMode(c) {
		return printJSON(c, r)
	}
	writeRecord(c, r)
	return nil
}

func recordNew(c *cli.Context) error {
	if err := needArgs(c, 2, -1, "SPACE FIELD=VALUE..."); err != nil {
		return err
	}
	args := c.Args().Slice()
	fields, err := parseFields(args[1:])
	if err != nil {
		return err
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	r, err := cl.RecordNew(ctxOf(c), api.RecordPutRequest{Space: ident(args[0]), Fields: fields})
	if err != nil {
		return err
	}
	if jsonMode(c) {
		return printJSON(c, r)
	}
	fmt.Fprintln(c.App.Writer, escapeText(r.ID))
	return nil
}

func recordRef(c *cli.Context) api.RecordRef {
	return api.RecordRef{Space: ident(c.Args().Get(0)), Record: ident(c.Args().Get(1))}
}

func recordGet(c *cli.Context) error {
	if err := needArgs(c, 2, 2, "SPACE RECORD"); err != nil {
		return err
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	r, err := cl.RecordGet(ctxOf(c), recordRef(c))
	if err != nil {
		return err
	}
	if jsonMode(c) {
		return printJSON(c, r)
	}
	writeRecord(c, r)
	return nil
}

func recordList(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "SPACE"); err != nil {
		return err
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	rs, err := cl.RecordList(ctxOf(c), api.SpaceRef{Space: ident(c.Args().First())})
	if err != nil {
		return err
	}
	if rs == nil {
		rs = []api.RecordSummary{}
	}
	if jsonMode(c) {
		return printJSON(c, rs)
	}
	if len(rs) == 0 {
		fmt.Fprintln(c.App.Writer, "no records")
		return nil
	}
	t := newTable("RECORD", "FIELDS", "CONFLICTS", "STATE")
	for _, r := range rs {
		state := ""
		if r.Deleted {
			state = "deleted"
		}
		t.add(r.ID, fmt.Sprint(r.Fields), fmt.Sprint(r.Conflicts), state)
	}
	t.write(c.App.Writer)
	return nil
}

func recordDelete(c *cli.Context) error {
	if err := needArgs(c, 2, 2, "SPACE RECORD"); err != nil {
		return err
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	r, err := cl.RecordDelete(ctxOf(c), recordRef(c))
	if err != nil {
		return err
	}
	if jsonMode(c) {
		return printJSON(c, r)
	}
	writeRecord(c, r)
	return nil
}

// maxShownRunes cuts long values in tables; --json shows them whole.
const maxShownRunes = 200

// shownValue is a value as a table shows it (before escaping).
// siblingValue is shownValue for a register's sibling: a live value this
// device holds without its bytes says so (docs/design.md §7).
func siblingValue(s api.Sibling) string {
	if s.Withheld {
		return "(value withheld: this device holds the write without its value)"
	}
	return shownValue(s.Value, s.ValueBase64)
}

func shownValue(text, b64 string) string {
	if b64 != "" {
		n := base64.StdEncoding.DecodedLen(len(b64))
		if raw, err := base64.StdEncoding.DecodeString(b64); err == nil {
			n = len(raw)
		}
		return fmt.Sprintf("<binary, %d bytes>", n)
	}
	if utf8.RuneCountInString(text) > maxShownRunes {
		r := []rune(text)
		return string(r[:maxShownRunes]) + fmt.Sprintf("… (%d bytes; --json shows all)", len(text))
	}
	return text
}

func officerOf(officer, bureau string) string {
	if officer == "" {
		officer = "?"
	}
	if bureau != "" {
		return officer + " (" + bureau + ")"
	}
	return officer
}

// recordState says plainly whether a record is deleted.
func recordState(r api.Record) string {
	switch {
	case r.Deleted && r.DeleteConflict:
		return "deleted, but an edit made concurrently with the delete survives (conflict): the fields below are that edit"
	case r.Deleted:
		return "deleted"
	}
	return "live"
}

// writeRecord prints a record: its state, its registers with every live
// value (numbered where they conflict), its sets and its notes.
func writeRecord(c *cli.Context, r api.Record) {
	w := c.App.Writer
	kv(w, "space", r.Space, "record", r.ID, "state", recordState(r))
	names := make([]string, 0, len(r.Fields))
	for n := range r.Fields {
		names = append(names, n)
	}
	sort.Strings(names)
	var conflicted []string
	if len(names) > 0 {
		fmt.Fprintln(w)
		t := newTable("FIELD", "#", "VALUE", "OFFICER", "AUTHOR", "HLC")
		for _, n := range names {
			f := r.Fields[n]
			if len(f.Siblings) == 0 {
				t.add(n, "", f.Value, "", "", "")
				continue
			}
			if f.Conflict {
				conflicted = append(conflicted, n)
			}
			for i, s := range f.Siblings {
				name, num := "", ""
				if i == 0 {
					name = n
				}
				if f.Conflict {
					num = fmt.Sprint(i + 1)
				}
				val := siblingValue(s)
				if i == 0 && f.Attachment != nil {
					val = attachmentShown(f.Attachment)
				}
				t.add(name, num, val, officerOf(s.Officer, s.Bureau), shortID(s.Author), hlcShown(s.HLC, s.Skewed))
			}
		}
		t.write(w)
	}
	if len(r.Sets) > 0 {
		fmt.Fprintln(w)
		sets := make([]string, 0, len(r.Sets))
		for n := range r.Sets {
			sets = append(sets, n)
		}
		sort.Strings(sets)
		t := newTable("SET", "ELEMENTS")
		for _, n := range sets {
			els := r.Sets[n].Elements
			if len(els) == 0 {
				t.add(n, "(empty)")
			}
			for i, e := range els {
				name := ""
				if i == 0 {
					name = n
				}
				t.add(name, e)
			}
		}
		t.write(w)
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(w)
		t := newTable("NOTE", "OFFICER", "AUTHOR", "HLC", "TEXT")
		for _, n := range r.Notes {
			text := shownValue(n.Text, "")
			if n.Removed {
				text = "(removed)"
			}
			t.add(n.ID, officerOf(n.Officer, ""), shortID(n.Author), n.HLC, text)
		}
		t.write(w)
	}
	if len(conflicted) > 0 {
		fmt.Fprintf(w, "\nconflict in %s: see `fieldsync conflicts show %s %s`, then `fieldsync resolve --pick N`\n",
			escapeText(strings.Join(conflicted, ", ")), escapeText(r.Space), escapeText(r.ID))
	}
}

func hlcShown(hlc string, skewed bool) string {
	if skewed {
		return hlc + " (clock skewed)"
	}
	return hlc
}
