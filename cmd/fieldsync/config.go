package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
	"gopkg.in/yaml.v3"
)

// The config file (--config FILE, FIELDSYNC_CONFIG) holds the values of
// global flags at its top level and those of `fieldsync agent` in an
// "agent" table. It is TOML (.toml) or YAML (.yaml, .yml); keys are the
// flags' long names. Precedence, highest first: the command line, the
// environment, the config file, the flag's default — urfave/cli's altsrc
// applies a file value only to a flag set neither on the command line nor
// through its environment variable. docs/config.example.toml documents it.

// configMaxBytes bounds the config file read.
const configMaxBytes = 1 << 20

// configAgentTable is the config file's table for `fieldsync agent`.
const configAgentTable = "agent"

// metadataConfig is the app.Metadata key of the loaded *configFile.
const metadataConfig = "config"

// notInConfig are global flags a config file may not set: they select
// output or name the file itself, per invocation.
var notInConfig = []string{"config", "json", "help", "version", "generate-bash-completion"}

// topLevelOnly are agent flags that the config file sets at its top level
// instead, because they apply to every command.
var topLevelOnly = []string{"log-level", "log-format"}

// notInAgentConfig are agent flags a config file may not set.
var notInAgentConfig = []string{"log-level", "log-format", "json", "help"}

// pathKeys are values taken relative to the config file's directory when
// they are relative paths.
var pathKeys = []string{"data-dir", "passphrase-file", "bureau-passphrase-file", "key-file", "mesh-key-file"}

// configFile is a parsed, checked config file: one input source for the
// global flags and one for the agent's.
type configFile struct {
	path   string
	global *altsrc.MapInputSource
	agent  *altsrc.MapInputSource
}

// loadConfigFile reads, parses and checks the config file at path against
// the flags it may set.
func loadConfigFile(path string, global, agentFl []cli.Flag) (*configFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %v", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, configMaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config file %s: %v", path, err)
	}
	if len(b) > configMaxBytes {
		return nil, fmt.Errorf("config file %s: larger than %d bytes", path, configMaxBytes)
	}
	raw, err := parseConfig(path, b)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config file %s: %v", path, err)
	}
	dir := filepath.Dir(abs)
	globals := map[any]any{}
	agents := map[any]any{}
	var problems []string
	for _, k := range sortedKeys(raw) {
		v := raw[k]
		if k == configAgentTable {
			t, ok := asTable(v)
			if !ok {
				problems = append(problems, fmt.Sprintf("%q must be a table of agent flags, not %s", k, kindOf(v)))
				continue
			}
			for _, ak := range sortedKeys(t) {
				if slices.Contains(topLevelOnly, ak) {
					problems = append(problems, fmt.Sprintf("%s.%s: set %s at the top level (it applies to every command)", k, ak, ak))
					continue
				}
				nv, err := checkConfigValue(agentFl, notInAgentConfig, ak, t[ak], dir)
				if err != nil {
					problems = append(problems, k+"."+err.Error())
					continue
				}
				agents[ak] = nv
			}
			continue
		}
		nv, err := checkConfigValue(global, notInConfig, k, v, dir)
		if err != nil {
			if findFlag(agentFl, k) != nil && !slices.Contains(notInAgentConfig, k) {
				err = fmt.Errorf("%s: an agent flag: put it in the [%s] table", k, configAgentTable)
			}
			problems = append(problems, err.Error())
			continue
		}
		globals[k] = nv
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("config file %s: %s", path, strings.Join(problems, "; "))
	}
	return &configFile{
		path:   path,
		global: altsrc.NewMapInputSource(path, globals),
		agent:  altsrc.NewMapInputSource(path, agents),
	}, nil
}

// parseConfig decodes TOML or YAML, chosen by the file's extension.
func parseConfig(path string, b []byte) (map[string]any, error) {
	var m map[string]any
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".toml":
		if _, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&m); err != nil {
			var pe toml.ParseError
			if errors.As(err, &pe) {
				return nil, fmt.Errorf("config file %s: line %d: %s", path, pe.Position.Line, pe.Message)
			}
			return nil, fmt.Errorf("config file %s: %v", path, err)
		}
	case ".yaml", ".yml":
		if err := yaml.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("config file %s: %v", path, err)
		}
	default:
		return nil, fmt.Errorf("config file %s: unknown format %q: name it .toml, .yaml or .yml", path, ext)
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

// checkConfigValue checks key against the flags that may be set and
// returns its value in the shape altsrc reads (string, bool, or a list of
// strings), with relative paths made relative to dir.
func checkConfigValue(flags []cli.Flag, excluded []string, key string, v any, dir string) (any, error) {
	f := findFlag(flags, key)
	if f == nil || slices.Contains(excluded, key) || isHiddenFlag(f) {
		return nil, fmt.Errorf("%s: unknown key", key)
	}
	switch f.(type) {
	case *altsrc.BoolFlag:
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("%s: want true or false, not %s", key, kindOf(v))
		}
		return b, nil
	case *altsrc.StringSliceFlag:
		switch x := v.(type) {
		case string: // one value, or comma-separated as on the command line
			var out []any
			for _, e := range strings.Split(x, ",") {
				if e = strings.TrimSpace(e); e != "" {
					out = append(out, e)
				}
			}
			return out, nil
		case []any:
			for i, e := range x {
				if _, ok := e.(string); !ok {
					return nil, fmt.Errorf("%s[%d]: want a string, not %s", key, i, kindOf(e))
				}
			}
			return x, nil
		}
		return nil, fmt.Errorf("%s: want a list of strings, not %s", key, kindOf(v))
	case *altsrc.StringFlag:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%s: want a string (in quotes), not %s", key, kindOf(v))
		}
		if s != "" && slices.Contains(pathKeys, key) && !filepath.IsAbs(s) {
			s = filepath.Join(dir, s)
		}
		return s, nil
	}
	return nil, fmt.Errorf("%s: cannot be set in a config file", key)
}

func findFlag(flags []cli.Flag, name string) cli.Flag {
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			return f
		}
	}
	return nil
}

func isHiddenFlag(f cli.Flag) bool {
	if vf, ok := f.(cli.VisibleFlag); ok {
		return !vf.IsVisible()
	}
	return false
}

func asTable(v any) (map[string]any, bool) {
	switch t := v.(type) {
	case map[string]any:
		return t, true
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[fmt.Sprint(k)] = x
		}
		return m, true
	}
	return nil, false
}

func kindOf(v any) string {
	switch x := v.(type) {
	case nil:
		return "empty"
	case string:
		return fmt.Sprintf("the string %q", x)
	case bool:
		return fmt.Sprintf("the boolean %v", x)
	case int, int64, uint64, float64:
		return fmt.Sprintf("the number %v", x)
	case []any:
		return "a list"
	case map[string]any, map[any]any:
		return "a table"
	}
	return fmt.Sprintf("a %T", v)
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// loadConfig is the app's Before: it loads the config file that --config
// (or FIELDSYNC_CONFIG) names, if any, and applies its top level to the
// global flags not set on the command line or in the environment. An
// explicit empty --config= loads none (the agent's worker gets that).
func loadConfig(c *cli.Context) error {
	path := c.String("config")
	if path == "" {
		return nil
	}
	cf, err := loadConfigFile(path, c.App.Flags, agentFlags())
	if err != nil {
		return &exitError{code: exitUsage, errCode: codeUsage, err: err,
			hint: "see docs/config.example.toml for the keys and their types"}
	}
	if c.App.Metadata == nil {
		c.App.Metadata = map[string]any{}
	}
	c.App.Metadata[metadataConfig] = cf
	if err := altsrc.ApplyInputSourceValues(c, cf.global, c.App.Flags); err != nil {
		return &exitError{code: exitUsage, errCode: codeUsage, err: fmt.Errorf("config file %s: %v", path, err)}
	}
	return nil
}

// applyAgentConfig is the agent command's Before: the config file's agent
// table fills the agent flags not set on the command line or in the
// environment.
func applyAgentConfig(c *cli.Context) error {
	cf, _ := c.App.Metadata[metadataConfig].(*configFile)
	if cf == nil {
		return nil
	}
	if err := altsrc.ApplyInputSourceValues(c, cf.agent, c.Command.Flags); err != nil {
		return &exitError{code: exitUsage, errCode: codeUsage, err: fmt.Errorf("config file %s: %v", cf.path, err)}
	}
	return nil
}
