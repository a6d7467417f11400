package api

import "context"

// What `fieldsync diag` gathers from a running agent (docs/metrics.md,
// "Diagnostics bundle"): its metrics, its recent logs and its configuration.

// PathLogs is the agent's recent log records: GET -> []LogRecord (most
// recent last).
const PathLogs = "/v1/logs"

// LogRecord is one log record as `GET /v1/logs` returns it.
type LogRecord struct {
	Time    string            `json:"time"`
	Level   string            `json:"level"`
	Message string            `json:"msg"`
	Attrs   map[string]string `json:"attrs,omitempty"`
}

// PathMetrics is the local API's copy of the metrics, for `fieldsync diag`
// when --metrics-addr is not set: GET -> MetricsSnapshot.
const PathMetrics = "/v1/metrics"

// MetricsSnapshot is the response of GET /v1/metrics: the Prometheus text
// exposition of every metric, as /metrics serves it.
type MetricsSnapshot struct {
	Format string `json:"format"` // the exposition's content type
	Text   string `json:"text"`
}

// Metrics fetches a metrics snapshot from the agent.
func (c *Client) Metrics(ctx context.Context) (MetricsSnapshot, error) {
	var m MetricsSnapshot
	err := c.Call(ctx, PathMetrics, nil, &m)
	return m, err
}

// Logs fetches the agent's recent log records, oldest first.
func (c *Client) Logs(ctx context.Context) ([]LogRecord, error) {
	var l []LogRecord
	err := c.Call(ctx, PathLogs, nil, &l)
	return l, err
}

// PathConfig is the running agent's configuration, without secrets:
// GET -> ConfigView.
const PathConfig = "/v1/config"

// ConfigView is an agent's configuration without any secret.
type ConfigView struct {
	DataDir         string   `json:"data_dir"`
	Socket          string   `json:"socket"`
	Unlock          string   `json:"unlock"` // "passphrase" or "key file": how, never what
	MeshKeyOverride bool     `json:"mesh_key_override"`
	Bind            string   `json:"bind"`
	Advertise       string   `json:"advertise,omitempty"`
	Join            []string `json:"join"`
	Relay           bool     `json:"relay"`
	Profile         string   `json:"profile"`
	MetricsAddr     string   `json:"metrics_addr,omitempty"`
	SyncInterval    string   `json:"sync_interval"` // "0s": the profile's
	MaxDrift        string   `json:"max_drift"`
	MaxValueBytes   int64    `json:"max_value_bytes"`
	MaxChangeBytes  int64    `json:"max_change_bytes"`
	MaxRequestBytes int64    `json:"max_request_bytes"`
	MinFreeBytes    int64    `json:"min_free_bytes"`
}
