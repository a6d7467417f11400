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
	o, err := parseInitFlags(c)
	if err != nil {
		return err
	}
	if err := checkInitTargets(o); err != nil {
		return err
	}
	// Everything that can fail for a reason the user can fix comes first.
	var bureau *crypto.Bureau
	if o.bureauKey != "" {
		if bureau, err = openBureauFile(c, o.bureauKey); err != nil {
			return err
		}
	}
	meshKey, err := initMeshKey(c)
	if err != nil {
		return err
	}
	id, ks, err := newKeystore(o.officer, meshKey)
	if err != nil {
		return err
	}
	defer ks.Zero()
	req := crypto.NewRequest(id, crypto.NameCommitment(o.officer, ks.NameSalt))
	sealed, keyFile, err := sealNewKeystore(c, ks, o.keyFile)
	if err != nil {
		return err
	}
	out := initOut{Device: id.ID().String(), DataDir: o.layout.Dir, Role: o.role.String()}
	var cert *crypto.Certificate
	if bureau != nil {
		if cert, err = enrollNow(bureau, id, req, o, &out); err != nil {
			return err
		}
	}
	f := initFiles{device: id.Public(), request: req, keyFile: keyFile, sealed: sealed, cert: cert, bureau: bureau}
	if err := writeInitFiles(o, f, &out); err != nil {
		return err
	}
	return printInit(c, out)
}

// initOpts are init's flags, checked.
type initOpts struct {
	officer   string
	bureauKey string // enroll at once with this bureau key file
	reqOut    string // or write an enrolment request here
	keyFile   string // seal with a new key file written here; empty: a passphrase
	role      crypto.Role
	validity  time.Duration
	layout    agent.Layout
}

// parseInitFlags reads and checks init's flags.
func parseInitFlags(c *cli.Context) (initOpts, error) {
	if err := needArgs(c, 0, 0, "--officer NAME (--bureau-key FILE | --request-out FILE) [--role relay] [--mesh-key FILE] [--key-file K]"); err != nil {
		return initOpts{}, err
	}
	noCoreDumps(c)
	o := initOpts{officer: ident(c.String("officer")), bureauKey: c.String("bureau-key"), reqOut: c.String("request-out")}
	switch {
	case o.officer == "":
		return o, usageErrorf("init needs --officer NAME")
	case o.bureauKey == "" && o.reqOut == "":
		return o, usageErrorf("init needs --bureau-key FILE (enroll now) or --request-out FILE (enroll elsewhere)")
	case o.bureauKey != "" && o.reqOut != "":
		return o, usageErrorf("give either --bureau-key or --request-out, not both")
	}
	var err error
	if o.role, err = crypto.ParseRole(c.String("role")); err != nil {
		return o, usageErrorf("bad --role %q: want officer or relay", c.String("role"))
	}
	if o.validity, err = parseValidity(c.String("valid")); err != nil {
		return o, err
	}
	if o.layout, err = layoutOf(c); err != nil {
		return o, err
	}
	o.keyFile = globalString(c, "key-file")
	return o, nil
}

// checkInitTargets refuses to overwrite anything: a device in the data
// directory, the key file, the request.
func checkInitTargets(o initOpts) error {
	l := o.layout
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
	if o.keyFile != "" {
		if _, err := os.Lstat(o.keyFile); err == nil {
			return withHint(fmt.Errorf("key file %s already exists", o.keyFile), "init writes a new key file; choose another path")
		}
	}
	if o.reqOut != "" {
		if _, err := os.Lstat(o.reqOut); err == nil {
			return withHint(fmt.Errorf("%s already exists", o.reqOut), "choose another --request-out")
		}
	}
	return nil
}

// newKeystore makes the device's keys: its identity, storage key and name
// salt. The caller zeroes the keystore.
func newKeystore(officer string, meshKey []byte) (*crypto.Identity, *crypto.Keystore, error) {
	id, err := crypto.NewIdentity(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("new device identity: %v", err)
	}
	ks := &crypto.Keystore{Identity: id, MeshKey: meshKey, Officer: officer}
	if _, err := io.ReadFull(rand.Reader, ks.StorageKey[:]); err != nil {
		ks.Zero()
		return nil, nil, err
	}
	if _, err := io.ReadFull(rand.Reader, ks.NameSalt[:]); err != nil {
		ks.Zero()
		return nil, nil, err
	}
	return id, ks, nil
}

// sealNewKeystore seals ks with a new key file (returned, to be written to
// keyFilePath) or, without one, with a passphrase asked for twice, through
// the one keystore sealing path (internal/datadir).
func sealNewKeystore(c *cli.Context, ks *crypto.Keystore, keyFilePath string) (sealed, keyFile []byte, err error) {
	var unlock datadir.Unlock
	if keyFilePath != "" {
		if keyFile, err = crypto.NewKeyFile(rand.Reader); err != nil {
			return nil, nil, fmt.Errorf("new key file: %v", err)
		}
		unlock.KeyFile = keyFile
	} else if unlock.Passphrase, err = readPassphrase(c, "passphrase-file", "new device passphrase", true); err != nil {
		return nil, nil, err
	}
	if sealed, err = datadir.SealKeystore(ks, unlock, kdfParams(c)); err != nil {
		return nil, nil, err
	}
	return sealed, keyFile, nil
}

// enrollNow issues the device's certificate with the bureau key, valid
// from now, countersigned by the device, and notes it in out.
func enrollNow(bureau *crypto.Bureau, id *crypto.Identity, req *crypto.Request, o initOpts, out *initOut) (*crypto.Certificate, error) {
	now := time.Now().UTC().Truncate(time.Second)
	cert, err := bureau.Issue(req, o.role, now, now.Add(o.validity))
	if err != nil {
		return nil, fmt.Errorf("issue certificate: %v", err)
	}
	// Both keys are here: the device countersigns its enrollment
	// (certificate version 2), which peers require.
	if cert, err = cert.Countersign(id); err != nil {
		return nil, fmt.Errorf("countersign certificate: %v", err)
	}
	out.Bureau, out.BureauFingerprint = bureau.Public().Name, bureau.Public().Fingerprint()
	out.CertValidUntil = cert.NotAfter.UTC().Format(time.RFC3339)
	return cert, nil
}

// initFiles is what init writes.
type initFiles struct {
	device  crypto.DevicePublic
	request *crypto.Request
	keyFile []byte // nil: sealed with a passphrase
	sealed  []byte // the keystore
	cert    *crypto.Certificate
	bureau  *crypto.Bureau // with cert
}

// writeInitFiles writes the request or key file first (never overwritten),
// then the public files, and the keystore last: it is what marks a device.
func writeInitFiles(o initOpts, f initFiles, out *initOut) error {
	l := o.layout
	if err := os.MkdirAll(l.Dir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %v", err)
	}
	if o.reqOut != "" {
		if err := writeNewFile(o.reqOut, f.request.Marshal(), 0o644); err != nil {
			return err
		}
		out.Request = o.reqOut
	}
	if o.keyFile != "" {
		if err := writeNewFile(o.keyFile, f.keyFile, 0o600); err != nil {
			return err
		}
		out.KeyFile = o.keyFile
	}
	if err := agent.SaveDevice(l, f.device); err != nil {
		return fmt.Errorf("write device file: %v", err)
	}
	if f.cert != nil {
		if err := writeEnrollment(l, f.cert, f.bureau); err != nil {
			return err
		}
	}
	if err := datadir.WriteKeystore(l, f.sealed); err != nil {
		return err
	}
	return nil
}

// writeEnrollment writes the certificate and trusts its bureau.
func writeEnrollment(l agent.Layout, cert *crypto.Certificate, bureau *crypto.Bureau) error {
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
	return nil
}

// printInit tells the user what init made and what to do next.
func printInit(c *cli.Context, out initOut) error {
	if jsonMode(c) {
		return printJSON(c, out)
	}
	w := c.App.Writer
	pairs := []string{"device", out.Device, "role", out.Role, "data dir", out.DataDir}
	if out.CertValidUntil != "" { // enrolled at once
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
		fmt.Fprintf(w, "next: the bureau runs `fieldsync enroll --out cert.json %s`; then run `fieldsync cert install cert.json` here\n", out.Request)
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
