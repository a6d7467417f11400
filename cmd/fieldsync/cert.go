package main

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"fieldsync/agent"
	"fieldsync/crypto"
	"fieldsync/internal/datadir"
)

func certCommand() *cli.Command {
	return &cli.Command{
		Name:  "cert",
		Usage: "install this device's certificate",
		Subcommands: []*cli.Command{
			{
				Name:  "install",
				Usage: "install a certificate issued for this device (`fieldsync enroll`), countersigned by this device, and trust its bureau",
				Description: "The device countersigns the bureau's certificate with its own key (certificate version 2),\n" +
					"so the keystore is opened (--passphrase-file, --key-file or a prompt). Without a way to open it\n" +
					"the certificate is installed as issued and the agent countersigns it when it starts.",
				ArgsUsage: "CERT-FILE",
				Action:    certInstall,
			},
		},
	}
}

func certInstall(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "CERT-FILE"); err != nil {
		return err
	}
	path := c.Args().First()
	data, err := readInput(path, "certificate")
	if err != nil {
		return err
	}
	// ParseCertificate checks the signature against the embedded bureau key.
	cert, err := crypto.ParseCertificate(data)
	if err != nil {
		return fmt.Errorf("certificate %s is not a valid bureau certificate: %v", path, err)
	}
	l, err := layoutOf(c)
	if err != nil {
		return err
	}
	dev, err := agent.LoadDevice(l)
	if err != nil {
		return err
	}
	if cert.Device.ID() != dev.ID() || !bytes.Equal(cert.Device.SignKey, dev.SignKey) || cert.Device.AgreeKey != dev.AgreeKey {
		return withHint(fmt.Errorf("certificate %s is for device %s, not for this device %s", path, cert.Device.ID(), dev.ID()),
			fmt.Sprintf("check --data-dir (%s)", l.Dir))
	}
	ts, err := datadir.LoadTrust(l)
	if err != nil {
		return err
	}
	_, had := ts.Lookup(cert.Bureau.Fingerprint())
	ts.Add(cert.Bureau)
	now := time.Now()
	verr := cert.Verify(ts, now)
	switch {
	case verr == nil:
	case errors.Is(verr, crypto.ErrNotYetValid):
		fmt.Fprintf(c.App.ErrWriter, "fieldsync: warning: certificate is valid only from %s; check this machine's clock\n", cert.NotBefore.UTC().Format(time.RFC3339))
	case errors.Is(verr, crypto.ErrExpired):
		return withHint(fmt.Errorf("certificate %s expired on %s", path, cert.NotAfter.UTC().Format(time.RFC3339)),
			"ask the bureau for a new one (`fieldsync enroll`)")
	default:
		return fmt.Errorf("certificate %s: %v", path, verr)
	}
	if !cert.Countersigned() {
		// The device's countersignature proves it accepted this enrollment
		// (docs/crypto.md §4); peers refuse a certificate without it.
		u, uerr := unlockOf(c, l)
		if uerr != nil {
			fmt.Fprintf(c.App.ErrWriter, "fieldsync: note: %v; the certificate is installed as issued and the agent countersigns it when it starts\n", uerr)
		} else {
			ks, err := datadir.LoadKeystore(l, u)
			if err != nil {
				return keystoreError("keystore", l.Keystore(), err)
			}
			signed, err := cert.Countersign(ks.Identity)
			ks.Zero()
			if err != nil {
				return fmt.Errorf("countersign certificate %s: %v", path, err)
			}
			cert, data = signed, signed.Marshal()
		}
	}
	if err := datadir.WriteFile(l.Cert(), data, 0o644); err != nil {
		return fmt.Errorf("write certificate: %v", err)
	}
	if !had {
		if err := datadir.SaveTrust(l, ts); err != nil {
			return fmt.Errorf("write trust list: %v", err)
		}
	}
	noteRestart(c, l, "certificate and trust list")
	return printCert(c, certInfo(cert, l.Cert()))
}
