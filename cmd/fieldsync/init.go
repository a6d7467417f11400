package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"fieldsync/agent"
	"fieldsync/crypto"
	"fieldsync/internal/datadir"
)

func initCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "create this device: keys sealed in a keystore, enrolled at once (--bureau-key) or as a request (--request-out)",
		Description: "With --bureau-key the device is enrolled at once (small setups, the demo): its certificate is\n" +
			"signed with the bureau key and the bureau is trusted. With --request-out it writes an enrolment\n" +
			"request for a bureau elsewhere (`fieldsync enroll`, then `fieldsync cert install`).\n" +
			"The keystore is sealed with a passphrase (--passphrase-file or a prompt), or, with --key-file K,\n" +
			"with a new random key file written to K (0600), for unattended relays.",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "officer", Usage: "the officer's `NAME` (sealed in the keystore; never in clear files)"},
			&cli.StringFlag{Name: "bureau-key", Usage: "enroll at once with the bureau key `FILE`"},
			&cli.StringFlag{Name: "request-out", Usage: "write an enrolment request to `FILE` instead"},
			&cli.StringFlag{Name: "role", Value: "officer", Usage: "`ROLE`: officer or relay"},
			&cli.StringFlag{Name: "mesh-key", Usage: "mesh key `FILE` (default: a new one)"},
			&cli.StringFlag{Name: "key-file", Usage: "seal the keystore with a new key file written to `K` (0600) instead of a passphrase"},
			&cli.StringFlag{Name: "valid", Value: "365d", Usage: "certificate validity `DURATION` (with --bureau-key), e.g. 365d"},
		},
		Action: initAction,
	}
}

type initOut struct {
	Device            string `json:"device"`
	DataDir           string `json:"data_dir"`
	Role              string `json:"role"`
	Bureau            string `json:"bureau,omitempty"`
	BureauFingerprint string `json:"bureau_fingerprint,omitempty"`
	CertValidUntil    string `json:"cert_valid_until,omitempty"`
	Request           string `json:"request,omitempty"`
	KeyFile           string `json:"key_file,omitempty"`
}

func initAction(c *cli.Context) error {
	if err := needArgs(c, 0, 0, "--officer NAME (--bureau-key FILE | --request-out FILE) [--role relay] [--mesh-key FILE] [--key-file K]"); err != nil {
		return err
	}
	noCoreDumps(c)
	officer := ident(c.String("officer"))
	bureauKey, reqOut := c.String("bureau-key"), c.String("request-out")
	switch {
	case officer == "":
		return usageErrorf("init needs --officer NAME")
	case bureauKey == "" && reqOut == "":
		return usageErrorf("init needs --bureau-key FILE (enroll now) or --request-out FILE (enroll elsewhere)")
	case bureauKey != "" && reqOut != "":
		return usageErrorf("give either --bureau-key or --request-out, not both")
	}
	role, err := crypto.ParseRole(c.String("role"))
	if err != nil {
		return usageErrorf("bad --role %q: want officer or relay", c.String("role"))
	}
	validity, err := parseValidity(c.String("valid"))
	if err != nil {
		return err
	}
	l, err := layoutOf(c)
	if err != nil {
		return err
	}
	if _, err := os.Stat(l.Keystore()); err == nil {
		dev, _ := agent.LoadDevice(l)
		id := ""
		if dev.SignKey != nil {
			id = " " + dev.ID().String()
		}
		return withHint(fmt.Errorf("a device%s already exists in %s", id, l.Dir),
			"init never overwrites a device; use another --data-dir, or `cert install` to enroll the existing one")
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("data directory %s: %v", l.Dir, err)
	}
	keyFilePath := globalString(c, "key-file")
	if keyFilePath != "" {
		if _, err := os.Lstat(keyFilePath); err == nil {
			return withHint(fmt.Errorf("key file %s already exists", keyFilePath), "init writes a new key file; choose another path")
		}
	}
	if reqOut != "" {
		if _, err := os.Lstat(reqOut); err == nil {
			return withHint(fmt.Errorf("%s already exists", reqOut), "choose another --request-out")
		}
	}

	// Everything that can fail for a reason the user can fix comes first.
	var bureau *crypto.Bureau
	if bureauKey != "" {
		if bureau, err = openBureauFile(c, bureauKey); err != nil {
			return err
		}
	}
	meshKey, err := initMeshKey(c)
	if err != nil {
		return err
	}

	id, err := crypto.NewIdentity(rand.Reader)
	if err != nil {
		return fmt.Errorf("new device identity: %v", err)
	}
	ks := &crypto.Keystore{Identity: id, MeshKey: meshKey, Officer: officer}
	defer ks.Zero()
	if _, err := io.ReadFull(rand.Reader, ks.StorageKey[:]); err != nil {
		return err
	}
	if _, err := io.ReadFull(rand.Reader, ks.NameSalt[:]); err != nil {
		return err
	}
	req := crypto.NewRequest(id, crypto.NameCommitment(officer, ks.NameSalt))

	var keyFile []byte
	var unlock datadir.Unlock
	if keyFilePath != "" {
		if keyFile, err = crypto.NewKeyFile(rand.Reader); err != nil {
			return fmt.Errorf("new key file: %v", err)
		}
		unlock.KeyFile = keyFile
	} else if unlock.Passphrase, err = readPassphrase(c, "passphrase-file", "new device passphrase", true); err != nil {
		return err
	}
	sealed, err := datadir.SealKeystore(ks, unlock, kdfParams(c))
	if err != nil {
		return err
	}

	out := initOut{Device: id.ID().String(), DataDir: l.Dir, Role: role.String()}
	var cert *crypto.Certificate
	if bureau != nil {
		now := time.Now().UTC().Truncate(time.Second)
		cert, err = bureau.Issue(req, role, now, now.Add(validity))
		if err != nil {
			return fmt.Errorf("issue certificate: %v", err)
		}
		// Both keys are here: the device countersigns its enrollment
		// (certificate version 2), which peers require.
		if cert, err = cert.Countersign(id); err != nil {
			return fmt.Errorf("countersign certificate: %v", err)
		}
		out.Bureau, out.BureauFingerprint = bureau.Public().Name, bureau.Public().Fingerprint()
		out.CertValidUntil = cert.NotAfter.UTC().Format(time.RFC3339)
	}

	// Write: the request or key file first (never overwritten), then the
	// public files, and the keystore last: it is what marks a device.
	if err := os.MkdirAll(l.Dir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %v", err)
	}
	if reqOut != "" {
		if err := writeNewFile(reqOut, req.Marshal(), 0o644); err != nil {
			return err
		}
		out.Request = reqOut
	}
	if keyFilePath != "" {
		if err := writeNewFile(keyFilePath, keyFile, 0o600); err != nil {
			return err
		}
		out.KeyFile = keyFilePath
	}
	if err := agent.SaveDevice(l, id.Public()); err != nil {
		return fmt.Errorf("write device file: %v", err)
	}
	if cert != nil {
		if err := datadir.WriteFile(l.Cert(), cert.Marshal(), 0o644); err != nil {
			return fmt.Errorf("write certificate: %v", err)
		}
		ts, err := datadir.LoadTrust(l)
		if err != nil {
			return err
		}
		ts.Add(bureau.Public())
		if err := datadir.SaveTrust(l, ts); err != nil {
			return fmt.Errorf("write trust list: %v", err)
		}
	}
	if err := datadir.WriteKeystore(l, sealed); err != nil {
		return err
	}

	if jsonMode(c) {
		return printJSON(c, out)
	}
	w := c.App.Writer
	pairs := []string{"device", out.Device, "role", out.Role, "data dir", out.DataDir}
	if cert != nil {
		pairs = append(pairs, "bureau", out.Bureau+" "+out.BureauFingerprint, "valid until", out.CertValidUntil)
	}
	if out.KeyFile != "" {
		pairs = append(pairs, "key file", out.KeyFile)
	}
	if out.Request != "" {
		pairs = append(pairs, "request", out.Request)
	}
	kv(w, pairs...)
	if out.Request != "" {
		fmt.Fprintf(w, "next: the bureau runs `fieldsync enroll --out cert.json %s`; then run `fieldsync cert install cert.json` here\n", reqOut)
	} else {
		fmt.Fprintln(w, "next: start the agent with `fieldsync agent`")
	}
	return nil
}

// initMeshKey is the new device's mesh key: --mesh-key FILE, the global
// --mesh-key-file, or a new random one.
func initMeshKey(c *cli.Context) ([]byte, error) {
	path := c.String("mesh-key")
	if path == "" {
		path = globalString(c, "mesh-key-file")
	}
	var data []byte
	var err error
	if path != "" {
		if data, err = readSecretFile(path); err != nil {
			return nil, fmt.Errorf("mesh key file: %v", err)
		}
	} else if data, err = crypto.NewMeshKeyFile(rand.Reader); err != nil {
		return nil, fmt.Errorf("new mesh key: %v", err)
	}
	k, err := crypto.ParseMeshKeyFile(data)
	if err != nil {
		return nil, fmt.Errorf("mesh key file %s: %v", path, err)
	}
	return k, nil
}
