package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Backups (docs/backup.md): the agent streams a backup file, then tells in
// HTTP trailers whether it finished and what it holds.

// PathBackup streams a backup: POST BackupRequest -> the backup file's bytes
// (application/octet-stream), then the trailer BackupTrailer.
const PathBackup = "/v1/backup"

// BackupTrailer is the HTTP trailer of a backup response: empty on success;
// otherwise the error that cut the backup short (the file is incomplete).
const BackupTrailer = "Fieldsync-Backup-Error"

// BackupInfoTrailer carries BackupInfo as JSON at the end of a backup.
const BackupInfoTrailer = "Fieldsync-Backup-Info"

// BackupRequest asks for a backup. It has no options yet.
type BackupRequest struct{}

// BackupInfo describes a backup (the `backup --json` output).
type BackupInfo struct {
	File    string       `json:"file,omitempty"`
	Device  string       `json:"device"`  // the device backed up
	Created string       `json:"created"` // RFC 3339
	Entries int          `json:"entries"` // store entries
	Bytes   int64        `json:"bytes"`   // size of the backup file
	Heads   []BackupHead `json:"heads"`   // the device's own log heads, per space
}

// BackupHead is the highest seq of the backed-up device's own log in one
// space, as the backup holds it.
type BackupHead struct {
	Space string `json:"space"`
	Seq   uint64 `json:"seq"`
}

// Backup streams a backup of the agent's store into w and returns what the
// agent reported. An incomplete backup is an error.
func (c *Client) Backup(ctx context.Context, w io.Writer) (BackupInfo, error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://fieldsync"+PathBackup, strings.NewReader("{}"))
	if err != nil {
		return BackupInfo{}, err
	}
	hr.Header.Set("Content-Type", "application/json")
	res, err := c.hc.Do(hr)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("agent request %s: %w", PathBackup, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
		var eb ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
			return BackupInfo{}, &APIError{Status: res.StatusCode, ErrorDetail: eb.Error}
		}
		return BackupInfo{}, fmt.Errorf("agent backup: HTTP %d: %s", res.StatusCode, strings.TrimSpace(string(data)))
	}
	n, err := io.Copy(w, res.Body)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("backup stream: %w", err)
	}
	if msg := res.Trailer.Get(BackupTrailer); msg != "" {
		return BackupInfo{}, fmt.Errorf("the agent could not finish the backup: %s", msg)
	}
	var info BackupInfo
	if err := json.Unmarshal([]byte(res.Trailer.Get(BackupInfoTrailer)), &info); err != nil {
		return BackupInfo{}, fmt.Errorf("backup incomplete: the agent stopped before the end (see its log)")
	}
	if info.Bytes != n {
		return BackupInfo{}, fmt.Errorf("backup incomplete: %d bytes received, the agent sent %d", n, info.Bytes)
	}
	return info, nil
}
