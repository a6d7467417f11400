package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"fieldsync/agent"
)

// resolved is what a command sees after the flags, the environment and the
// config file have been applied.
type resolved struct {
	DataDir, KeyFile, MeshKeyFile     string
	LogLevel, LogFormat               string
	Bind, Advertise, Profile, Metrics string
	Join                              []string
	Relay                             bool
	Worker                            []string // the agent-worker's arguments
}

// resolveArgs runs the real command tree on args (as run() does) with the
// agent command's action replaced by one that records what it resolved.
func resolveArgs(t *testing.T, args ...string) (r resolved, code int, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	app := newApp(strings.NewReader(""), &out, &errb)
	for _, c := range app.Commands {
		if c.Name != "agent" {
			continue
		}
		c.Action = func(c *cli.Context) error {
			r.DataDir = globalString(c, "data-dir")
			r.KeyFile = globalString(c, "key-file")
			r.MeshKeyFile = globalString(c, "mesh-key-file")
			r.LogLevel, r.LogFormat = logSettings(c)
			r.Bind, r.Advertise, r.Profile = c.String("bind"), c.String("advertise"), c.String("profile")
			r.Metrics, r.Join, r.Relay = c.String("metrics-addr"), c.StringSlice("join"), c.Bool("relay")
			r.Worker = workerArgs(c, agent.Layout{Dir: "/data"})
			return nil
		}
	}
	err := app.Run(reorderArgs(app, append([]string{"fieldsync"}, args...)))
	if err != nil {
		code = exitFailure
		if ee, ok := err.(*exitError); ok {
			code = ee.code
		}
		errb.WriteString(err.Error())
	}
	return r, code, errb.String()
}

// clearEnv unsets every FIELDSYNC_ variable a precedence test may set.
func clearEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "FIELDSYNC_") {
			t.Setenv(k, "") // restores it afterwards
			os.Unsetenv(k)
		}
	}
}

func writeConfig(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The same settings in both formats.
var configTexts = map[string]string{
	"relay.toml": `# a relay
data-dir = "/srv/cfg"
key-file = "/etc/cfg.key"
mesh-key-file = "mesh.key"  # relative: next to this file
log-level = "warn"
log-format = "json"

[agent]
bind = "10.0.0.1:7946"
advertise = "203.0.113.5:7946"
join = ["relay-a:7946", "relay-b:7946"]
relay = true
profile = "lan"
metrics-addr = "127.0.0.1:9464"
`,
	"relay.yaml": `# a relay
data-dir: /srv/cfg
key-file: /etc/cfg.key
mesh-key-file: mesh.key
log-level: warn
log-format: json
agent:
  bind: "10.0.0.1:7946"
  advertise: "203.0.113.5:7946"
  join: [relay-a:7946, relay-b:7946]
  relay: true
  profile: lan
  metrics-addr: "127.0.0.1:9464"
`,
}

func TestConfigPrecedence(t *testing.T) {
	for name, text := range configTexts {
		t.Run(filepath.Ext(name)[1:], func(t *testing.T) {
			clearEnv(t)
			cfg := writeConfig(t, name, text)
			meshKey := filepath.Join(filepath.Dir(cfg), "mesh.key")

			// default: no config file, no environment
			r, code, stderr := resolveArgs(t, "agent")
			if code != 0 {
				t.Fatalf("defaults: exit %d: %s", code, stderr)
			}
			want := resolved{LogLevel: "info", LogFormat: "text", Bind: "127.0.0.1:7946", Profile: "wan"}
			checkResolved(t, "default", r, want)

			// the config file beats the defaults
			r, code, stderr = resolveArgs(t, "--config", cfg, "agent")
			if code != 0 {
				t.Fatalf("config: exit %d: %s", code, stderr)
			}
			fromFile := resolved{DataDir: "/srv/cfg", KeyFile: "/etc/cfg.key", MeshKeyFile: meshKey,
				LogLevel: "warn", LogFormat: "json", Bind: "10.0.0.1:7946", Advertise: "203.0.113.5:7946",
				Profile: "lan", Metrics: "127.0.0.1:9464", Join: []string{"relay-a:7946", "relay-b:7946"}, Relay: true}
			checkResolved(t, "config", r, fromFile)

			// FIELDSYNC_CONFIG names the file as --config does
			t.Setenv("FIELDSYNC_CONFIG", cfg)
			r, _, _ = resolveArgs(t, "agent")
			checkResolved(t, "FIELDSYNC_CONFIG", r, fromFile)

			// the environment beats the config file
			env := map[string]string{
				"FIELDSYNC_DATA_DIR": "/srv/env", "FIELDSYNC_KEY_FILE": "/etc/env.key",
				"FIELDSYNC_LOG_LEVEL": "debug", "FIELDSYNC_LOG_FORMAT": "text",
				"FIELDSYNC_BIND": "10.0.0.2:7946", "FIELDSYNC_ADVERTISE": "198.51.100.1:7946",
				"FIELDSYNC_JOIN": "relay-env:7946", "FIELDSYNC_RELAY": "false",
				"FIELDSYNC_PROFILE": "local", "FIELDSYNC_METRICS_ADDR": "127.0.0.1:9999",
			}
			for k, v := range env {
				t.Setenv(k, v)
			}
			r, code, stderr = resolveArgs(t, "agent")
			if code != 0 {
				t.Fatalf("env: exit %d: %s", code, stderr)
			}
			fromEnv := resolved{DataDir: "/srv/env", KeyFile: "/etc/env.key", MeshKeyFile: meshKey,
				LogLevel: "debug", LogFormat: "text", Bind: "10.0.0.2:7946", Advertise: "198.51.100.1:7946",
				Profile: "local", Metrics: "127.0.0.1:9999", Join: []string{"relay-env:7946"}, Relay: false}
			checkResolved(t, "env over config", r, fromEnv)

			// flags beat the environment and the config file
			r, code, stderr = resolveArgs(t, "--data-dir", "/srv/flag", "--log-level", "error", "--log-format", "json",
				"agent", "--bind", "10.0.0.3:7946", "--advertise", "192.0.2.1:7946", "--join", "relay-flag:7946",
				"--relay", "--profile", "wan", "--metrics-addr", "127.0.0.1:1234")
			if code != 0 {
				t.Fatalf("flags: exit %d: %s", code, stderr)
			}
			fromFlags := resolved{DataDir: "/srv/flag", KeyFile: "/etc/env.key", MeshKeyFile: meshKey,
				LogLevel: "error", LogFormat: "json", Bind: "10.0.0.3:7946", Advertise: "192.0.2.1:7946",
				Profile: "wan", Metrics: "127.0.0.1:1234", Join: []string{"relay-flag:7946"}, Relay: true}
			checkResolved(t, "flags over env", r, fromFlags)

			// the agent's own --log-level beats the global one on the command line
			r, _, _ = resolveArgs(t, "--log-level", "error", "agent", "--log-level", "debug", "--log-format", "text")
			if r.LogLevel != "debug" || r.LogFormat != "text" {
				t.Errorf("agent --log-level: got %s %s", r.LogLevel, r.LogFormat)
			}
		})
	}
}

// TestConfigWorkerArgs: the worker gets every resolved setting explicitly,
// and --config= so that it reads no config file of its own.
func TestConfigWorkerArgs(t *testing.T) {
	clearEnv(t)
	cfg := writeConfig(t, "relay.toml", configTexts["relay.toml"])
	r, code, stderr := resolveArgs(t, "--config", cfg, "agent")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	w := strings.Join(r.Worker, " ")
	want := "--config= --data-dir /data --log-level warn --log-format json --mesh-key-file " +
		filepath.Join(filepath.Dir(cfg), "mesh.key") + " agent-worker --bind 10.0.0.1:7946 --profile lan " +
		"--advertise=203.0.113.5:7946 --relay=true --no-find=false --client=false --detect-nat=false --budget-session= --budget-day= --keepalive=0s --attachments=all " +
		"--prune-min-age=24h0m0s --compact-every=4096 --no-auto-erase=false " +
		"--metrics-addr=127.0.0.1:9464 --join relay-a:7946 --join relay-b:7946"
	if w != want {
		t.Errorf("worker args:\n got %s\nwant %s", w, want)
	}
	// The worker, run with those arguments and a config file in its
	// environment, resolves the same settings.
	t.Setenv("FIELDSYNC_CONFIG", writeConfig(t, "other.toml", "log-level = \"debug\"\n[agent]\nrelay = false\nprofile = \"local\"\n"))
	t.Setenv("FIELDSYNC_RELAY", "false")
	var got resolved
	app := newApp(strings.NewReader(""), new(bytes.Buffer), new(bytes.Buffer))
	for _, c := range app.Commands {
		if c.Name == "agent-worker" {
			c.Action = func(c *cli.Context) error {
				got.LogLevel, got.LogFormat = logSettings(c)
				got.Relay, got.Profile, got.Join = c.Bool("relay"), c.String("profile"), c.StringSlice("join")
				return nil
			}
		}
	}
	if err := app.Run(append([]string{"fieldsync"}, r.Worker...)); err != nil {
		t.Fatal(err)
	}
	if got.LogLevel != "warn" || got.LogFormat != "json" || !got.Relay || got.Profile != "lan" || len(got.Join) != 2 {
		t.Errorf("worker resolved %+v", got)
	}
}

func checkResolved(t *testing.T, what string, got, want resolved) {
	t.Helper()
	got.Worker = nil
	if got.DataDir != want.DataDir || got.KeyFile != want.KeyFile || got.MeshKeyFile != want.MeshKeyFile ||
		got.LogLevel != want.LogLevel || got.LogFormat != want.LogFormat || got.Bind != want.Bind ||
		got.Advertise != want.Advertise || got.Profile != want.Profile || got.Metrics != want.Metrics ||
		!slices.Equal(got.Join, want.Join) || got.Relay != want.Relay {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func TestConfigFileErrors(t *testing.T) {
	clearEnv(t)
	cases := []struct{ name, text, want string }{
		{"bad.toml", "data-dirr = \"/x\"\n", `data-dirr: unknown key`},
		{"bad.toml", "bind = \"0.0.0.0:7946\"\n", `bind: an agent flag: put it in the [agent] table`},
		{"bad.toml", "[agent]\nlog-level = \"debug\"\n", `agent.log-level: set log-level at the top level`},
		{"bad.toml", "[agent]\nbind = 7946\n", `agent.bind: want a string (in quotes), not the number 7946`},
		{"bad.toml", "[agent]\nrelay = \"yes\"\n", `agent.relay: want true or false, not the string "yes"`},
		{"bad.toml", "[agent]\njoin = [1, 2]\n", `agent.join[0]: want a string, not the number 1`},
		{"bad.toml", "agent = \"relay\"\n", `"agent" must be a table of agent flags`},
		{"bad.toml", "json = true\n", `json: unknown key`},
		{"bad.toml", "test-kdf = true\n", `test-kdf: unknown key`},
		{"bad.toml", "data-dir = \"/x\"\ndata-dir = \"/y\"\n", `line 2`},
		{"bad.yaml", "agent:\n  bind: [\n", `bad.yaml: yaml:`},
		{"bad.yaml", "agent:\n  profle: lan\n", `agent.profle: unknown key`},
		{"bad.ini", "data-dir=/x\n", `unknown format ".ini": name it .toml, .yaml or .yml`},
	}
	for _, c := range cases {
		p := writeConfig(t, c.name, c.text)
		_, code, stderr := resolveArgs(t, "--config", p, "agent")
		if code != exitUsage || !strings.Contains(stderr, c.want) || !strings.Contains(stderr, p) {
			t.Errorf("%q: exit %d, %q; want exit 2 naming the file and %q", c.text, code, stderr, c.want)
		}
	}
	_, code, stderr := resolveArgs(t, "--config", filepath.Join(t.TempDir(), "missing.toml"), "agent")
	if code != exitUsage || !strings.Contains(stderr, "missing.toml: no such file") {
		t.Errorf("missing file: exit %d, %q", code, stderr)
	}
	// An explicit empty --config= reads none, even with FIELDSYNC_CONFIG set.
	t.Setenv("FIELDSYNC_CONFIG", writeConfig(t, "bad.toml", "nonsense = 1\n"))
	if _, code, stderr := resolveArgs(t, "--config=", "agent"); code != 0 {
		t.Errorf("--config=: exit %d, %s", code, stderr)
	}
}

// A list may also be written as one string, comma-separated as on the
// command line.
func TestConfigListAsString(t *testing.T) {
	clearEnv(t)
	for name, text := range map[string]string{
		"one.toml": "[agent]\njoin = \"relay-a:7946, relay-b:7946\"\n",
		"one.yaml": "agent:\n  join: relay-a:7946,relay-b:7946\n",
	} {
		r, code, stderr := resolveArgs(t, "--config", writeConfig(t, name, text), "agent")
		if code != 0 || !slices.Equal(r.Join, []string{"relay-a:7946", "relay-b:7946"}) {
			t.Errorf("%s: exit %d %s: join %q", name, code, stderr, r.Join)
		}
	}
}

// The commented examples in docs/ are valid and say the same thing.
func TestConfigExamples(t *testing.T) {
	clearEnv(t)
	var got []resolved
	for _, name := range []string{"config.example.toml", "config.example.yaml"} {
		p := filepath.Join("..", "..", "docs", name)
		r, code, stderr := resolveArgs(t, "--config", p, "agent")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", name, code, stderr)
		}
		got = append(got, r)
	}
	if got[0].Bind == "127.0.0.1:7946" || !got[0].Relay {
		t.Errorf("the TOML example sets nothing: %+v", got[0])
	}
	a, b := got[0], got[1]
	a.Worker, b.Worker = nil, nil
	if a.DataDir != b.DataDir || a.Bind != b.Bind || a.Relay != b.Relay || !slices.Equal(a.Join, b.Join) ||
		a.LogLevel != b.LogLevel || a.LogFormat != b.LogFormat || a.Metrics != b.Metrics || a.KeyFile != b.KeyFile {
		t.Errorf("the examples differ:\ntoml %+v\nyaml %+v", a, b)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "0": 0, "512": 512, "500kB": 500_000, "20MiB": 20 << 20, "1 GB": 1e9, "7B": 7} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"-1", "1.5MB", "12 parsecs", "MB", "99999999999GiB"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) accepted", in)
		}
	}
}
