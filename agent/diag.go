package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"time"

	"fieldsync/agent/api"
	"fieldsync/internal/datadir"
)

// The diagnostics bundle (`fieldsync diag`, docs/metrics.md): what support
// needs to understand a device's trouble, and nothing that would let anyone
// read its data or impersonate it. It never holds a secret: the keystore,
// passphrase files, key files and mesh keys are never read into it (the
// config shows paths at most), and the logs are redacted (logring.go).
// Diagnose writes what it can when the agent is down and says why each
// section is missing.

// DiagFormat names the bundle's format and version.
const DiagFormat = "fieldsync-diag/1"

// Diag section names, as in DiagBundle's JSON and its Missing map.
const (
	DiagVersions = "versions"
	DiagConfig   = "config"
	DiagDataDir  = "data_dir"
	DiagStatus   = "status"
	DiagPeers    = "peers"
	DiagMetrics  = "metrics"
	DiagLogs     = "logs"
)

// DiagSections lists every section of a bundle, in order.
var DiagSections = []string{DiagVersions, DiagConfig, DiagDataDir, DiagStatus, DiagPeers, DiagMetrics, DiagLogs}

// DiagBundle is the diagnostics bundle: one JSON document.
type DiagBundle struct {
	Format   string               `json:"format"`  // DiagFormat
	Created  string               `json:"created"` // RFC 3339, UTC
	Versions VersionsView         `json:"versions"`
	Config   DiagConfigView       `json:"config"`
	DataDir  DataDirView          `json:"data_dir"`
	Status   *api.Status          `json:"status"`  // nil when the agent is not running
	Peers    []api.PeerInfo       `json:"peers"`   // nil when the agent is not running
	Metrics  *api.MetricsSnapshot `json:"metrics"` // nil when the agent is not running
	Logs     []api.LogRecord      `json:"logs"`    // nil when the agent is not running
	// Missing names each section left out and why (e.g. the agent is not running).
	Missing map[string]string `json:"missing"`
}

// VersionsView is the bundle's "versions" section.
type VersionsView struct {
	CLI           string            `json:"cli"`   // the fieldsync that wrote the bundle
	Agent         string            `json:"agent"` // the running agent's ("" when down)
	Go            string            `json:"go"`
	OS            string            `json:"os"`
	Arch          string            `json:"arch"`
	StorageFormat int               `json:"storage_format"` // the store format this CLI knows
	Modules       map[string]string `json:"modules"`        // dependencies built in, by module path
}

// DiagConfigView is the bundle's "config" section: the CLI's global flags
// as given (file paths only, never their contents) and the running agent's
// configuration.
type DiagConfigView struct {
	CLI   map[string]string `json:"cli"`
	Agent *api.ConfigView   `json:"agent"` // nil when the agent is not running
}

// DataDirView is the bundle's "data_dir" section: facts about the files,
// read without unlocking anything.
type DataDirView struct {
	Path           string       `json:"path"`
	Files          []FileFact   `json:"files"`
	StoreDiskBytes int64        `json:"store_disk_bytes"`
	StoreFiles     int          `json:"store_files"`
	Quarantined    bool         `json:"quarantined"`
	Quarantine     []string     `json:"quarantine"` // stores set aside after crash loops (directory names)
	Device         *DeviceFacts `json:"device"`     // from device.json and cert.json; nil if unreadable
	Trusted        []string     `json:"trusted"`    // trusted bureaus: "NAME fingerprint"
	Errors         []string     `json:"errors,omitempty"`
}

// FileFact is one file of the data directory.
type FileFact struct {
	Name   string `json:"name"`
	Exists bool   `json:"exists"`
	Size   int64  `json:"size,omitempty"`
	Mode   string `json:"mode,omitempty"`
}

// DeviceFacts are the public facts of the device and its certificate.
type DeviceFacts struct {
	ID        string `json:"id"`
	Bureau    string `json:"bureau,omitempty"`
	Role      string `json:"role,omitempty"`
	NotBefore string `json:"not_before,omitempty"`
	NotAfter  string `json:"not_after,omitempty"`
}

// Config returns the agent's configuration without secrets.
func (a *Agent) Config() api.ConfigView {
	c := a.cfg
	v := api.ConfigView{
		DataDir: c.Layout.Dir, Socket: c.Layout.Socket(), Unlock: "passphrase", MeshKeyOverride: c.MeshKey != nil,
		Bind: c.Bind, Advertise: c.Advertise, Join: append([]string{}, c.Join...), Relay: c.Relay, Profile: c.Profile,
		MetricsAddr: c.MetricsAddr, SyncInterval: c.SyncInterval.String(), MaxDrift: c.MaxDrift.String(),
		MaxValueBytes: c.MaxValueBytes, MaxChangeBytes: c.MaxChangeBytes, MaxRequestBytes: c.MaxRequestBytes, MinFreeBytes: c.MinFreeBytes,
	}
	if c.Unlock.KeyFile != nil {
		v.Unlock = "key file"
	}
	return v
}

func init() {
	apiExtensions = append(apiExtensions, func(a *Agent, mux *http.ServeMux) {
		mux.HandleFunc("GET "+api.PathConfig, func(w http.ResponseWriter, r *http.Request) {
			a.reply(w, a.Config(), nil)
		})
	})
}

// Diagnose builds the diagnostics bundle of the data directory l: the
// sections that need the agent come from its socket; the others are read
// from the data directory (public files only) and from this binary.
// cliConfig is the CLI's own configuration (paths, levels; no secrets).
func Diagnose(ctx context.Context, l Layout, cliConfig map[string]string) DiagBundle {
	b := DiagBundle{
		Format:   DiagFormat,
		Created:  time.Now().UTC().Format(time.RFC3339),
		Versions: versions(),
		Config:   DiagConfigView{CLI: cliConfig},
		DataDir:  dataDirFacts(l),
		Missing:  map[string]string{},
	}
	if b.Config.CLI == nil {
		b.Config.CLI = map[string]string{}
	}
	cl, err := api.Dial(l)
	if err != nil {
		why := err.Error()
		if errors.Is(err, api.ErrAgentNotRunning) {
			why += ": start it with `fieldsync agent` and run diag again for these sections"
		}
		// config: the running agent's part (the CLI's part is there).
		for _, s := range []string{DiagConfig, DiagStatus, DiagPeers, DiagMetrics, DiagLogs} {
			b.Missing[s] = why
		}
		return b
	}
	missing := func(section string, err error) {
		if err != nil {
			b.Missing[section] = err.Error()
		}
	}
	if st, err := cl.Status(ctx); err == nil {
		b.Status = &st
		b.Versions.Agent = st.Version
	} else {
		missing(DiagStatus, err)
	}
	if p, err := cl.Peers(ctx); err == nil {
		b.Peers = p
	} else {
		missing(DiagPeers, err)
	}
	var cv api.ConfigView
	if err := cl.Call(ctx, api.PathConfig, nil, &cv); err == nil {
		b.Config.Agent = &cv
	} else {
		missing(DiagConfig, fmt.Errorf("the running agent's configuration: %w", err))
	}
	if m, err := cl.Metrics(ctx); err == nil {
		b.Metrics = &m
	} else {
		missing(DiagMetrics, err)
	}
	if lg, err := cl.Logs(ctx); err == nil {
		b.Logs = lg
	} else {
		missing(DiagLogs, err)
	}
	return b
}

// versions describes this binary.
func versions() VersionsView {
	v := VersionsView{CLI: Version, Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH,
		StorageFormat: storageFormat, Modules: map[string]string{}}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Replace != nil {
				m = m.Replace
			}
			v.Modules[m.Path] = m.Version
		}
	}
	return v
}

// dataDirFacts reads what can be known of the data directory without a
// secret: which files exist, their sizes and modes, the store's disk use,
// quarantine, and the public device, certificate and trust files.
func dataDirFacts(l Layout) DataDirView {
	v := DataDirView{Path: l.Dir, Quarantine: []string{}, Trusted: []string{}}
	for _, p := range []string{l.Keystore(), l.Device(), l.Cert(), l.Trust(), l.Store(), l.Lock(), l.Socket(), l.Quarantine(), l.QuarantineMarker()} {
		f := FileFact{Name: p}
		if rel, err := filepath.Rel(l.Dir, p); err == nil && filepath.IsLocal(rel) {
			f.Name = rel
		}
		if info, err := os.Stat(p); err == nil {
			f.Exists, f.Mode = true, info.Mode().String()
			if info.Mode().IsRegular() {
				f.Size = info.Size()
			}
		}
		v.Files = append(v.Files, f)
	}
	note := func(what string, err error) { v.Errors = append(v.Errors, fmt.Sprintf("%s: %v", what, err)) }
	if n, err := diskUsage(l.Store()); err == nil {
		v.StoreDiskBytes = n
	} else if !errors.Is(err, fs.ErrNotExist) {
		note("store", err)
	}
	if es, err := os.ReadDir(l.Store()); err == nil {
		v.StoreFiles = len(es)
	}
	if _, err := os.Stat(l.QuarantineMarker()); err == nil {
		v.Quarantined = true
	}
	if es, err := os.ReadDir(l.Quarantine()); err == nil {
		for _, e := range es {
			v.Quarantine = append(v.Quarantine, e.Name())
		}
	}
	if dev, err := LoadDevice(l); err == nil {
		v.Device = &DeviceFacts{ID: dev.ID().String()}
		if c, err := datadir.LoadCert(l); err == nil {
			v.Device.Bureau, v.Device.Role = c.Bureau.Name, c.Role.String()
			v.Device.NotBefore, v.Device.NotAfter = c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339)
		} else {
			note("certificate", err)
		}
	} else {
		note("device", err)
	}
	if ts, err := datadir.LoadTrust(l); err == nil {
		for _, b := range ts.List() {
			v.Trusted = append(v.Trusted, b.Name+" "+b.Fingerprint())
		}
		sort.Strings(v.Trusted)
	} else {
		note("trust", err)
	}
	return v
}
