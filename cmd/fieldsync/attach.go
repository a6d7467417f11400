package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"fieldsync/agent/api"
)

// `record attach` and `record open` (docs/cli.md, "Attachments"): files
// attached to a field as encrypted, content-addressed chunks. The agent
// reads and writes the files itself; the CLI passes absolute paths.

func recordAttachCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:  "attach",
			Usage: "attach a file (photo, scan) to a field: stored as encrypted chunks, synced last and resumably",
			Description: "FILE is written @path. Only chunks not held in the space yet are stored and sent,\n" +
				"so the same file on two records, or an edited photo, costs only what changed.",
			ArgsUsage: "SPACE RECORD FIELD @FILE",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "name", Usage: "file `NAME` to record (default: the file's base name)"},
				&cli.StringFlag{Name: "mime", Usage: "media `TYPE`, e.g. image/jpeg"},
			},
			Action: recordAttach,
		},
		{
			Name:      "open",
			Usage:     "write an attached file out, checked against its hash (fetches it first on an on-demand device)",
			ArgsUsage: "SPACE RECORD FIELD",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "`PATH` to write (default: the attachment's name in the current directory)"},
				&cli.DurationFlag{Name: "wait", Value: 0, Usage: "wait up to `DURATION` for chunks not held yet (0: say so and return)"},
			},
			Action: recordOpen,
		},
	}
}

func recordAttach(c *cli.Context) error {
	if err := needArgs(c, 4, 4, "SPACE RECORD FIELD @FILE"); err != nil {
		return err
	}
	args := c.Args().Slice()
	file, ok := strings.CutPrefix(args[3], "@")
	if !ok || file == "" {
		return usageErrorf("the file is written @path (got %q)", args[3])
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return err
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	res, err := cl.RecordAttach(ctxOf(c), api.AttachRequest{Space: ident(args[0]), Record: ident(args[1]), Field: ident(args[2]),
		Path: abs, Name: c.String("name"), Mime: c.String("mime")})
	if err != nil {
		return err
	}
	if jsonMode(c) {
		return printJSON(c, res)
	}
	at := res.Attachment
	kv(c.App.Writer, "attached", at.Name, "size", fmt.Sprint(at.Size), "sha256", at.SHA256,
		"chunks", fmt.Sprintf("%d (%d new, %d bytes; %d already held)", at.Chunks, res.NewChunks, res.NewBytes, res.ReusedChunk))
	return nil
}

func recordOpen(c *cli.Context) error {
	if err := needArgs(c, 3, 3, "SPACE RECORD FIELD"); err != nil {
		return err
	}
	args := c.Args().Slice()
	cl, err := dial(c)
	if err != nil {
		return err
	}
	ref := api.RecordRef{Space: ident(args[0]), Record: ident(args[1])}
	field := ident(args[2])
	out := c.String("out")
	if out == "" {
		r, err := cl.RecordGet(ctxOf(c), ref)
		if err != nil {
			return err
		}
		f, ok := r.Fields[field]
		if !ok || f.Attachment == nil {
			return usageErrorf("field %q of %s is not an attachment", field, ref.Record)
		}
		out = filepath.Base(f.Attachment.Name)
		if out == "." || out == "/" || out == ".." {
			return usageErrorf("the attachment's name %q is not a file name: give --out", f.Attachment.Name)
		}
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	res, err := cl.RecordOpen(ctxOf(c), api.OpenRequest{Space: ref.Space, Record: ref.Record, Field: field, Out: abs,
		WaitMS: c.Duration("wait").Milliseconds()})
	if err != nil {
		return err
	}
	if jsonMode(c) {
		return printJSON(c, res)
	}
	kv(c.App.Writer, "wrote", res.Out, "size", fmt.Sprint(res.Attachment.Size), "sha256", res.Attachment.SHA256+" (verified)")
	return nil
}

// attachmentShown is the VALUE column of an attachment in `record get`.
func attachmentShown(a *api.Attachment) string {
	held := a.State
	if held == "partial" {
		held = fmt.Sprintf("partial(%d/%d)", a.Held, a.Chunks)
	}
	return fmt.Sprintf("[file] %s, %d bytes, sha256 %s…, held %s", a.Name, a.Size, a.SHA256[:min(12, len(a.SHA256))], held)
}
