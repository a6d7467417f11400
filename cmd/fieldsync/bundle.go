package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"fieldsync/agent/api"
)

// bundleCommand is `fieldsync bundle want|export|import`: sneakernet, the
// same signed envelopes as sync, carried as a file (docs/bundle.md).
func bundleCommand() *cli.Command {
	return &cli.Command{
		Name:  "bundle",
		Usage: "carry changes as a file between devices that never share a network",
		Subcommands: []*cli.Command{
			{
				Name:      "want",
				Usage:     "write this device's version vectors (signed), for an exporter to send only what is missing",
				ArgsUsage: " ",
				Flags:     []cli.Flag{&cli.StringFlag{Name: "out", Usage: "write the want file to `FILE`"}},
				Action:    bundleWant,
			},
			{
				Name:      "export",
				Usage:     "write a signed bundle: what a receiver lacks and is entitled to (--want), or everything",
				ArgsUsage: " ",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "space", Usage: "only `SPACE` (ID, ID prefix or name)"},
					&cli.StringFlag{Name: "want", Usage: "the receiver's want `FILE` (from `fieldsync bundle want`)"},
					&cli.StringFlag{Name: "out", Usage: "write the bundle to `FILE`"},
				},
				Action: bundleExport,
			},
			{
				Name:      "import",
				Usage:     "verify a bundle whole, then store what it adds",
				ArgsUsage: "FILE",
				Action:    bundleImport,
			},
		},
	}
}

// absOut checks and absolutises an --out path (the agent writes it).
func absOut(c *cli.Context) (string, error) {
	out := c.String("out")
	if out == "" {
		return "", usageErrorf("missing --out FILE")
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return "", fmt.Errorf("--out %s: %v", out, err)
	}
	if _, err := os.Lstat(abs); err == nil {
		return "", &exitError{code: exitFailure, err: fmt.Errorf("%s already exists", out), hint: "remove it first or choose another --out"}
	}
	return abs, nil
}

// absIn checks and absolutises an input file path (the agent reads it).
func absIn(path, what string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("%s %s: %v", what, path, err)
	}
	if _, err := os.Stat(abs); errors.Is(err, fs.ErrNotExist) {
		return "", &exitError{code: exitNotFound, errCode: api.CodeNotFound, err: fmt.Errorf("%s %s: no such file", what, path)}
	} else if err != nil {
		return "", fmt.Errorf("%s %s: %v", what, path, err)
	}
	return abs, nil
}

func bundleWant(c *cli.Context) error {
	if err := needArgs(c, 0, 0, "--out FILE"); err != nil {
		return err
	}
	out, err := absOut(c)
	if err != nil {
		return err
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	r, err := cl.BundleWant(ctxOf(c), api.BundleWantRequest{Out: out})
	if err != nil {
		return err
	}
	if jsonMode(c) {
		return printJSON(c, r)
	}
	fmt.Fprintf(c.App.Writer, "wrote want file %s: %d spaces, %d bytes, for device %s\n", r.Out, r.Spaces, r.Bytes, r.Device)
	return nil
}

func bundleExport(c *cli.Context) error {
	if err := needArgs(c, 0, 0, "[--space S] [--want FILE] --out FILE"); err != nil {
		return err
	}
	out, err := absOut(c)
	if err != nil {
		return err
	}
	req := api.BundleExportRequest{Space: ident(c.String("space")), Out: out}
	if w := c.String("want"); w != "" {
		if req.Want, err = absIn(w, "want file"); err != nil {
			return err
		}
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	bar := newProgressBar(c.App.ErrWriter)
	r, err := cl.BundleExport(ctxOf(c), req, bar.update())
	bar.finish()
	if err != nil {
		return err
	}
	if jsonMode(c) {
		return printJSON(c, r)
	}
	t := newTable("SPACE", "ENVELOPES")
	for _, s := range r.Spaces {
		t.add(s.Space, fmt.Sprint(s.Envelopes))
	}
	t.write(c.App.Writer)
	to := "any device"
	if r.Recipient != "" {
		to = "device " + r.Recipient
	}
	fmt.Fprintf(c.App.Writer, "wrote bundle %s for %s: %d envelopes (%d key shares), %d certificates, %d revocations, %d fork evidence, %d bytes\n",
		r.Out, to, r.Envelopes, r.KeyShares, r.Certificates, r.Revocations, r.Evidence, r.Bytes)
	if len(r.NotEntitled) > 0 {
		fmt.Fprintf(c.App.Writer, "left out %d spaces not released to the receiver's bureau: %s\n", len(r.NotEntitled), strings.Join(r.NotEntitled, ", "))
	}
	if r.Corrupt > 0 {
		fmt.Fprintf(c.App.ErrWriter, "fieldsync: warning: %d envelopes are corrupt in this store and were left out (with the rest of their author's run); see `fieldsync status`\n", r.Corrupt)
	}
	return nil
}

func bundleImport(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "FILE"); err != nil {
		return err
	}
	file, err := absIn(c.Args().First(), "bundle")
	if err != nil {
		return err
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	bar := newProgressBar(c.App.ErrWriter)
	r, err := cl.BundleImport(ctxOf(c), api.BundleImportRequest{File: file}, bar.update())
	bar.finish()
	if err != nil {
		var ae *api.APIError
		if errors.As(err, &ae) && ae.Code == api.CodeRefused {
			return &exitError{code: exitFailure, errCode: api.CodeRefused, err: err,
				hint: "ask the sender for a new bundle; nothing of this one was stored"}
		}
		return err
	}
	if jsonMode(c) {
		return printJSON(c, r)
	}
	fmt.Fprintf(c.App.Writer, "imported %s from device %s (%s), made %s\n", r.File, r.Exporter, r.ExporterBureau, r.Created)
	fmt.Fprintf(c.App.Writer, "envelopes: %d added, %d already held, %d skipped, of %d\n", r.Added, r.AlreadyHeld, r.Skipped, r.Envelopes)
	fmt.Fprintf(c.App.Writer, "added: %d certificates, %d revocations, %d fork evidence\n", r.Certificates, r.Revocations, r.Evidence)
	if len(r.Skips) > 0 {
		t := newTable("SPACE", "AUTHOR", "SEQS", "REASON", "DETAIL")
		for _, s := range r.Skips {
			t.add(s.Space, s.Author, fmt.Sprintf("%d-%d", s.From, s.To), s.Reason, s.Message)
		}
		t.write(c.App.Writer)
	}
	for _, n := range r.ObjectSkipNotes {
		fmt.Fprintf(c.App.Writer, "skipped %s\n", n)
	}
	return nil
}

// progressBar draws one line on stderr while a long export or import runs,
// only when stderr is a terminal (never into a log or a pipe).
type progressBar struct {
	w     io.Writer
	on    bool
	drawn bool
}

func newProgressBar(w io.Writer) *progressBar {
	f, ok := w.(*os.File)
	return &progressBar{w: w, on: ok && term.IsTerminal(int(f.Fd()))}
}

// update returns the progress callback, or nil when no bar is drawn (the
// agent then answers in one piece).
func (p *progressBar) update() func(api.BundleProgress) {
	if !p.on {
		return nil
	}
	return func(pr api.BundleProgress) {
		const width = 30
		frac := 1.0
		if pr.Total > 0 {
			frac = min(float64(pr.Done)/float64(pr.Total), 1)
		}
		n := int(frac * width)
		amount := fmt.Sprintf("%d/%d %s", pr.Done, pr.Total, pr.Unit)
		if pr.Unit == "bytes" {
			amount = fmt.Sprintf("%.1f/%.1f MB", float64(pr.Done)/1e6, float64(pr.Total)/1e6)
		}
		fmt.Fprintf(p.w, "\r%-7s [%s%s] %3.0f%% %s\x1b[K", pr.Phase, strings.Repeat("#", n), strings.Repeat(".", width-n), frac*100, amount)
		p.drawn = true
	}
}

func (p *progressBar) finish() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}
