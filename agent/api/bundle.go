package api

import "context"

// The bundle API (docs/api.md, "Bundles"): the agent writes want files and
// bundles and imports them itself (the CLI passes absolute paths over the
// owner-only socket). Package agent/bundle does the work.

// Bundle API paths.
const (
	PathBundleWant   = "/v1/bundle/want"   // POST BundleWantRequest -> BundleWantResult
	PathBundleExport = "/v1/bundle/export" // POST BundleExportRequest -> BundleExportResult (NDJSON with progress)
	PathBundleImport = "/v1/bundle/import" // POST BundleImportRequest -> BundleImportResult (NDJSON with progress)
)

// BundleWantRequest is `bundle want --out FILE`.
type BundleWantRequest struct {
	Out string `json:"out"` // absolute path of the file to create
}

// BundleWantResult describes the want file written.
type BundleWantResult struct {
	Out    string `json:"out"`
	Device string `json:"device"`
	Spaces int    `json:"spaces"`
	Bytes  int64  `json:"bytes"`
}

// BundleExportRequest is `bundle export [--space S] [--want FILE] --out FILE`.
type BundleExportRequest struct {
	Space    string `json:"space,omitempty"` // one space (ID, prefix or name); empty: every space
	Want     string `json:"want,omitempty"`  // absolute path of the receiver's want file
	Out      string `json:"out"`             // absolute path of the bundle to create
	Progress bool   `json:"progress,omitempty"`
}

// BundleSpaceCount is how many envelopes of a space a bundle carries (or an
// import added).
type BundleSpaceCount struct {
	Space     string `json:"space"`
	Envelopes int    `json:"envelopes"`
}

// BundleExportResult describes the bundle written.
type BundleExportResult struct {
	Out          string             `json:"out"`
	Recipient    string             `json:"recipient,omitempty"` // the want file's device
	Spaces       []BundleSpaceCount `json:"spaces"`
	Envelopes    int                `json:"envelopes"`
	KeyShares    int                `json:"key_shares"` // key-share envelopes among them
	Certificates int                `json:"certificates"`
	Revocations  int                `json:"revocations"`
	Evidence     int                `json:"evidence"`
	Erasures     int                `json:"erasures"`     // erase markers (tombstones) carried
	NotEntitled  []string           `json:"not_entitled"` // spaces held but not released to the recipient's bureau
	Corrupt      int                `json:"corrupt"`      // envelopes left out: corrupt in this store
	Bytes        int64              `json:"bytes"`
}

// BundleImportRequest is `bundle import FILE`.
type BundleImportRequest struct {
	File     string `json:"file"` // absolute path
	Progress bool   `json:"progress,omitempty"`
}

// BundleSkip is a run of envelopes of one author in one space that an import
// left out, and why (a reject reason).
type BundleSkip struct {
	Space   string `json:"space"`
	Author  string `json:"author"`
	From    uint64 `json:"from"`
	To      uint64 `json:"to"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// BundleImportResult is what an import added and what it left out.
type BundleImportResult struct {
	File            string             `json:"file"`
	Exporter        string             `json:"exporter"`
	ExporterBureau  string             `json:"exporter_bureau"`
	Created         string             `json:"created"`
	Recipient       string             `json:"recipient,omitempty"`
	Envelopes       int                `json:"envelopes"`    // in the bundle
	Added           int                `json:"added"`        // newly stored
	AlreadyHeld     int                `json:"already_held"` // held before
	Skipped         int                `json:"skipped"`      // left out (see skips)
	Spaces          []BundleSpaceCount `json:"spaces"`       // added, by space
	Certificates    int                `json:"certificates_added"`
	Revocations     int                `json:"revocations_added"`
	Evidence        int                `json:"evidence_added"`
	Erasures        int                `json:"erasures_added"`  // erase markers taken: their spaces are erased here
	SkippedObjects  int                `json:"skipped_objects"` // certificates/revocations/evidence not accepted
	Skips           []BundleSkip       `json:"skips"`
	SkipsOmitted    int                `json:"skips_omitted,omitempty"` // runs of skips not listed (over 4,096)
	ObjectSkipNotes []string           `json:"object_skips,omitempty"`
}

// BundleProgress is one progress line of a long export or import.
type BundleProgress struct {
	Phase string `json:"phase"` // export | verify | store
	Done  int64  `json:"done"`
	Total int64  `json:"total"`
	Unit  string `json:"unit"` // envelopes | bytes
}

// BundleWant is `bundle want`.
func (c *Client) BundleWant(ctx context.Context, req BundleWantRequest) (BundleWantResult, error) {
	return call[BundleWantResult](ctx, c, PathBundleWant, req)
}

// BundleExport is `bundle export`; onProgress, when set, receives progress lines.
func (c *Client) BundleExport(ctx context.Context, req BundleExportRequest, onProgress func(BundleProgress)) (BundleExportResult, error) {
	var r BundleExportResult
	req.Progress = onProgress != nil
	return r, CallProgress(ctx, c, PathBundleExport, req, &r, onProgress)
}

// BundleImport is `bundle import`; onProgress, when set, receives progress lines.
func (c *Client) BundleImport(ctx context.Context, req BundleImportRequest, onProgress func(BundleProgress)) (BundleImportResult, error) {
	var r BundleImportResult
	req.Progress = onProgress != nil
	return r, CallProgress(ctx, c, PathBundleImport, req, &r, onProgress)
}
