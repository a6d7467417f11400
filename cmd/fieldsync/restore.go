package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"fieldsync/agent"
	"fieldsync/crypto"
)

func restoreCommand() *cli.Command {
	return &cli.Command{
		Name:  "restore",
		Usage: "restore a backup as a new incarnation of the device (new key, enrolled again, old one revoked)",
		Description: "restore works on --data-dir, which must be new or empty (stop the old agent and move its\n" +
			"directory aside first). It makes a fresh device key, copies the backup's store, and with\n" +
			"--bureau-key enrolls the new device and revokes the old one, so that no (author, seq) is ever\n" +
			"reused. The revocation's cut-offs are what the mesh holds of the old device: restore first runs\n" +
			"the new device until it has synced with the peers it reaches (--join, or the peers the backup\n" +
			"remembers). --offline revokes at the backup's own heads instead: writes the old device made\n" +
			"after the backup are then refused everywhere. With --request-out the new device is enrolled\n" +
			"by a bureau elsewhere (`fieldsync enroll`, then `fieldsync cert install`), and that bureau\n" +
			"revokes the old device with `fieldsync revoke` on a device that has caught up.",
		ArgsUsage: "BACKUP",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "bureau-key", Usage: "enroll the new device and revoke the old one with the bureau key `FILE`"},
			&cli.StringFlag{Name: "request-out", Usage: "write the new device's enrolment request to `FILE` instead"},
			&cli.StringFlag{Name: "valid", Value: "365d", Usage: "certificate validity `DURATION` (with --bureau-key)"},
			&cli.StringSliceFlag{Name: "join", Usage: "catch up through the peer at `HOST:PORT` (repeatable; default: the peers the backup remembers)"},
			&cli.StringFlag{Name: "bind", Value: "127.0.0.1:0", Usage: "gossip `HOST:PORT` while catching up (give the agent's own --bind when peers are on other hosts)"},
			&cli.StringFlag{Name: "profile", Value: "wan", Usage: "gossip timing `PROFILE` of the mesh: wan, lan or local"},
			&cli.DurationFlag{Name: "catch-up-timeout", Value: 2 * time.Minute, Usage: "give up reaching peers after `DURATION`"},
			&cli.BoolFlag{Name: "offline", Usage: "do not contact peers: revoke the old device at the backup's heads"},
		},
		Action: restoreAction,
	}
}

type restoreCutoff struct {
	Space string `json:"space"`
	Seq   uint64 `json:"seq"`
}

type restoreOut struct {
	Device        string          `json:"device"`
	OldDevice     string          `json:"old_device"`
	DataDir       string          `json:"data_dir"`
	BackupCreated string          `json:"backup_created"`
	Entries       int             `json:"entries"`
	Enrolled      bool            `json:"enrolled"`
	Request       string          `json:"request,omitempty"`
	Revoked       bool            `json:"revoked"`
	CutoffSource  string          `json:"cutoff_source,omitempty"` // "peers" or "backup"
	Cutoffs       []restoreCutoff `json:"cutoffs"`
	CaughtUpFrom  []string        `json:"caught_up_from"`
}

func restoreAction(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "(--bureau-key FILE | --request-out FILE) [--join HOST:PORT]... [--offline] BACKUP"); err != nil {
		return err
	}
	noCoreDumps(c)
	bureauKey, reqOut := c.String("bureau-key"), c.String("request-out")
	switch {
	case bureauKey == "" && reqOut == "":
		return usageErrorf("restore needs --bureau-key FILE (enroll and revoke now) or --request-out FILE (a bureau elsewhere)")
	case bureauKey != "" && reqOut != "":
		return usageErrorf("give either --bureau-key or --request-out, not both")
	case c.Bool("offline") && len(c.StringSlice("join")) > 0:
		return usageErrorf("--offline contacts no peer: drop --join, or drop --offline to catch up through it")
	case reqOut != "" && (c.Bool("offline") || len(c.StringSlice("join")) > 0):
		return usageErrorf("--offline and --join go with --bureau-key (with --request-out the bureau revokes the old device)")
	}
	validity, err := parseValidity(c.String("valid"))
	if err != nil {
		return err
	}
	if err := checkProfile(c.String("profile")); err != nil {
		return err
	}
	l, err := layoutOf(c)
	if err != nil {
		return err
	}
	if err := agent.CheckRestoreTarget(l); err != nil {
		return &exitError{code: exitFailure, errCode: "restore_target", err: err,
			hint: "restore never touches an existing device: give an empty or new --data-dir"}
	}
	if reqOut != "" {
		if _, err := os.Lstat(reqOut); err == nil {
			return withHint(fmt.Errorf("%s already exists", reqOut), "choose another --request-out")
		}
	}
	path := c.Args().First()
	f, err := os.Open(path)
	if err != nil {
		return &exitError{code: exitFailure, err: fmt.Errorf("backup %s: %v", path, err)}
	}
	defer f.Close()
	u, err := backupUnlock(c, f)
	if err != nil {
		return err
	}
	b, err := agent.OpenBackup(f, u)
	if err != nil {
		return backupError(path, err)
	}
	old := b.OldDevice()
	cfg := agent.RestoreConfig{Layout: l, Unlock: u, KDF: kdfParams(c)}
	var bureau *crypto.Bureau
	if bureauKey != "" {
		if bureau, err = openBureauFile(c, bureauKey); err != nil {
			return err
		}
		defer bureau.Zero()
		want := b.OldCertificate().Bureau
		if bureau.Public().Fingerprint() != want.Fingerprint() {
			return withHint(fmt.Errorf("bureau key %s is %s (%s), but device %s was enrolled by %s (%s)", bureauKey,
				bureau.Public().Name, bureau.Public().Fingerprint(), old, want.Name, want.Fingerprint()),
				"only the device's own bureau can revoke it: use its bureau key, or --request-out for that bureau")
		}
		cfg.Trust = []crypto.BureauPublic{bureau.Public()}
		cfg.Enroll = func(req *crypto.Request, role crypto.Role) (*crypto.Certificate, error) {
			now := time.Now().UTC().Truncate(time.Second)
			return bureau.Issue(req, role, now, now.Add(validity))
		}
	}
	res, err := agent.Restore(cfg, b)
	if err != nil {
		return backupError(path, err)
	}
	out := restoreOut{Device: res.Device.String(), OldDevice: old.String(), DataDir: l.Dir, Entries: res.Entries,
		BackupCreated: b.Created().UTC().Format(time.RFC3339), Enrolled: res.Cert != nil, Cutoffs: []restoreCutoff{}, CaughtUpFrom: []string{}}
	if reqOut != "" {
		if err := writeNewFile(reqOut, res.Request.Marshal(), 0o644); err != nil {
			return err
		}
		out.Request = reqOut
	}
	if bureau != nil {
		revoke := func(cutoffs map[crypto.SpaceID]uint64) ([]byte, error) {
			r, err := bureau.Revoke(old, cutoffs, 0, time.Now())
			if err != nil {
				return nil, err
			}
			return r.Marshal(), nil
		}
		acfg := agent.DefaultConfig()
		acfg.Layout, acfg.Unlock = l, u
		acfg.Relay = b.OldCertificate().Role == crypto.RoleRelay
		acfg.Bind, acfg.Join, acfg.Profile = c.String("bind"), c.StringSlice("join"), c.String("profile")
		acfg.Logger = slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: slog.LevelWarn}))
		if acfg.MeshKey, err = meshKeyOverride(c); err != nil {
			return err
		}
		var cutoffs map[crypto.SpaceID]uint64
		if c.Bool("offline") {
			cutoffs = res.OldHeads
			blob, err := revoke(cutoffs)
			if err == nil {
				err = agent.StoreRevocation(acfg, blob)
			}
			if err != nil {
				return notRevoked(out, fmt.Errorf("revoke the old device: %w", err), res.OldHeads)
			}
			out.Revoked, out.CutoffSource = true, "backup"
		} else {
			ctx, cancel := context.WithTimeout(ctxOf(c), c.Duration("catch-up-timeout"))
			cu, err := agent.CatchUp(ctx, acfg, old, revoke)
			cancel()
			if cu != nil {
				out.CaughtUpFrom = append(out.CaughtUpFrom, cu.Peers...)
				cutoffs = cu.Cutoffs
				out.Revoked = cu.Revoked
			}
			if err != nil {
				return notRevoked(out, fmt.Errorf("catch up before revoking the old device: %w", err), res.OldHeads)
			}
			out.CutoffSource = "peers"
		}
		out.Cutoffs = sortedCutoffs(cutoffs)
	}
	if jsonMode(c) {
		return printJSON(c, out)
	}
	writeRestore(c.App.Writer, out)
	return nil
}

// backupUnlock asks for what opens the backup: the key file (--key-file) if
// the backup is sealed with one, else the passphrase.
func backupUnlock(c *cli.Context, f *os.File) (agent.Unlock, error) {
	fixed := make([]byte, crypto.SealedHeaderSize)
	_, rerr := io.ReadFull(f, fixed)
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return agent.Unlock{}, err
	}
	keyFile := false
	if rerr == nil {
		_, keyFile, _ = crypto.BackupHeaderLen(fixed) // errors are reported by OpenBackup
	}
	keyPath := globalString(c, "key-file")
	switch {
	case keyFile && keyPath == "":
		return agent.Unlock{}, &exitError{code: exitFailure, errCode: "wrong_unlock",
			err: errors.New("the backup is sealed with a key file (it came from a device unlocked by one)"), hint: "give --key-file FILE"}
	case keyFile:
		k, err := readSecretFile(keyPath)
		if err != nil {
			return agent.Unlock{}, fmt.Errorf("key file: %v", err)
		}
		return agent.Unlock{KeyFile: k}, nil
	}
	p, err := readPassphrase(c, "passphrase-file", "backup passphrase (the backed-up device's)", false)
	if err != nil {
		return agent.Unlock{}, err
	}
	return agent.Unlock{Passphrase: p}, nil
}

// backupError explains a backup that cannot be opened or restored.
func backupError(path string, err error) error {
	switch {
	case errors.Is(err, crypto.ErrWrongPassphrase):
		return &exitError{code: exitFailure, errCode: "wrong_passphrase", err: fmt.Errorf("backup %s: %w", path, err),
			hint: "a backup opens with the passphrase (or key file) of the device it was taken from, as it was then"}
	case errors.Is(err, crypto.ErrMalformed):
		return &exitError{code: exitFailure, errCode: "corrupt", err: fmt.Errorf("backup %s is damaged, truncated or not a fieldsync backup: %w", path, err),
			hint: "nothing was restored; use another copy of the backup"}
	case errors.Is(err, agent.ErrRestoreTarget):
		return &exitError{code: exitFailure, errCode: "restore_target", err: err}
	}
	return fmt.Errorf("restore: %w", err)
}

// notRevoked reports a restore that made and enrolled the new device but
// could not revoke the old one, with what to do.
func notRevoked(out restoreOut, err error, heads map[crypto.SpaceID]uint64) error {
	var cut []string
	for _, h := range sortedCutoffs(heads) {
		cut = append(cut, fmt.Sprintf("--cutoff %s:%d", h.Space, h.Seq))
	}
	hint := fmt.Sprintf("the new device %s is restored and enrolled in %s, but the old device %s is NOT revoked yet: "+
		"start `fieldsync agent --join PEER`, let it catch up, then run `fieldsync revoke --bureau-key FILE %s` there "+
		"(its cut-offs are then what the mesh holds); if no peer can hold anything newer than the backup, revoke at the backup's heads: `fieldsync revoke --bureau-key FILE %s`",
		out.Device, out.DataDir, out.OldDevice, out.OldDevice, strings.Join(append(cut, out.OldDevice), " "))
	return &exitError{code: exitFailure, errCode: "not_revoked", err: err, hint: hint}
}

func sortedCutoffs(m map[crypto.SpaceID]uint64) []restoreCutoff {
	out := []restoreCutoff{}
	for sp, seq := range m {
		out = append(out, restoreCutoff{Space: sp.String(), Seq: seq})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Space < out[j].Space })
	return out
}

func writeRestore(w io.Writer, out restoreOut) {
	pairs := []string{"device", out.Device, "old device", out.OldDevice, "data dir", out.DataDir,
		"backup of", out.BackupCreated, "entries", fmt.Sprint(out.Entries)}
	if len(out.CaughtUpFrom) > 0 {
		pairs = append(pairs, "caught up from", strings.Join(out.CaughtUpFrom, ", "))
	}
	kv(w, pairs...)
	switch {
	case out.Revoked:
		fmt.Fprintf(w, "old device %s revoked (cut-offs from the %s):\n", out.OldDevice, map[string]string{"peers": "peers", "backup": "backup"}[out.CutoffSource])
		for _, c := range out.Cutoffs {
			fmt.Fprintf(w, "  %s  seq %d\n", c.Space, c.Seq)
		}
		if len(out.Cutoffs) == 0 {
			fmt.Fprintln(w, "  (it wrote nothing this device holds: everything it could write is refused)")
		}
		fmt.Fprintln(w, "next: start the agent with `fieldsync agent`; then rotate the mesh key (`fieldsync mesh-key`) if the old device may be in other hands")
	case out.Request != "":
		fmt.Fprintf(w, "next: the bureau runs `fieldsync enroll --out cert.json %s`, and `fieldsync revoke --bureau-key FILE %s` on a device that has caught up; then run `fieldsync cert install cert.json` here\n", out.Request, out.OldDevice)
	}
}
