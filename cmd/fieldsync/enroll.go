package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"fieldsync/crypto"
)

func enrollCommand() *cli.Command {
	return &cli.Command{
		Name:      "enroll",
		Usage:     "sign a device's enrolment request with a bureau key, giving its certificate",
		ArgsUsage: "REQUEST-FILE",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "bureau-key", Usage: "the bureau key `FILE`"},
			&cli.StringFlag{Name: "role", Value: "officer", Usage: "`ROLE`: officer or relay"},
			&cli.StringFlag{Name: "valid", Value: "365d", Usage: "validity `DURATION`, e.g. 365d or 72h"},
			&cli.StringFlag{Name: "out", Usage: "write the certificate to `FILE`"},
		},
		Action: enrollAction,
	}
}

type certOut struct {
	Device            string `json:"device"`
	Role              string `json:"role"`
	Bureau            string `json:"bureau"`
	BureauFingerprint string `json:"bureau_fingerprint"`
	NotBefore         string `json:"not_before"`
	NotAfter          string `json:"not_after"`
	File              string `json:"file,omitempty"`
}

func certInfo(cert *crypto.Certificate, file string) certOut {
	return certOut{
		Device:            cert.Device.ID().String(),
		Role:              cert.Role.String(),
		Bureau:            cert.Bureau.Name,
		BureauFingerprint: cert.Bureau.Fingerprint(),
		NotBefore:         cert.NotBefore.UTC().Format(time.RFC3339),
		NotAfter:          cert.NotAfter.UTC().Format(time.RFC3339),
		File:              file,
	}
}

func printCert(c *cli.Context, o certOut) error {
	if jsonMode(c) {
		return printJSON(c, o)
	}
	pairs := []string{"device", o.Device, "role", o.Role, "bureau", o.Bureau + " " + o.BureauFingerprint,
		"valid from", o.NotBefore, "valid until", o.NotAfter}
	if o.File != "" {
		pairs = append(pairs, "certificate", o.File)
	}
	kv(c.App.Writer, pairs...)
	return nil
}

func enrollAction(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "--bureau-key FILE [--role officer|relay] [--valid 365d] --out cert.json REQUEST-FILE"); err != nil {
		return err
	}
	bureauKey, out := c.String("bureau-key"), c.String("out")
	if bureauKey == "" || out == "" {
		return usageErrorf("enroll needs --bureau-key FILE and --out FILE")
	}
	role, err := crypto.ParseRole(c.String("role"))
	if err != nil {
		return usageErrorf("bad --role %q: want officer or relay", c.String("role"))
	}
	validity, err := parseValidity(c.String("valid"))
	if err != nil {
		return err
	}
	reqPath := c.Args().First()
	data, err := readInput(reqPath, "request")
	if err != nil {
		return err
	}
	req, err := crypto.ParseRequest(data)
	if err != nil {
		return withHint(fmt.Errorf("request %s is not a valid enrolment request: %v", reqPath, err),
			"the device makes it with `fieldsync init --request-out FILE`")
	}
	b, err := openBureauFile(c, bureauKey)
	if err != nil {
		return err
	}
	now := time.Now().UTC().Truncate(time.Second)
	cert, err := b.Issue(req, role, now, now.Add(validity))
	if err != nil {
		return fmt.Errorf("issue certificate: %v", err)
	}
	if err := writeNewFile(out, cert.Marshal(), 0o644); err != nil {
		return err
	}
	return printCert(c, certInfo(cert, out))
}
