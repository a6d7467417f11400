package bundle

// The requests and results of the bundle API (docs/api.md, "Bundles"). The
// agent names them BundleWantRequest, BundleExportResult, ….

// WantRequest is `bundle want --out FILE`.
type WantRequest struct {
	Out string `json:"out"` // absolute path of the file to create
}

// WantResult describes the want file written.
type WantResult struct {
	Out    string `json:"out"`
	Device string `json:"device"`
	Spaces int    `json:"spaces"`
	Bytes  int64  `json:"bytes"`
}

// ExportRequest is `bundle export [--space S] [--want FILE] --out FILE`.
type ExportRequest struct {
	Space    string `json:"space,omitempty"` // one space (ID, prefix or name); empty: every space
	Want     string `json:"want,omitempty"`  // absolute path of the receiver's want file
	Out      string `json:"out"`             // absolute path of the bundle to create
	Progress bool   `json:"progress,omitempty"`
}

// SpaceCount is how many envelopes of a space a bundle carries (or an
// import added).
type SpaceCount struct {
	Space     string `json:"space"`
	Envelopes int    `json:"envelopes"`
}

// ExportResult describes the bundle written.
type ExportResult struct {
	Out          string       `json:"out"`
	Recipient    string       `json:"recipient,omitempty"` // the want file's device
	Spaces       []SpaceCount `json:"spaces"`
	Envelopes    int          `json:"envelopes"`
	KeyShares    int          `json:"key_shares"` // key-share envelopes among them
	Certificates int          `json:"certificates"`
	Revocations  int          `json:"revocations"`
	Evidence     int          `json:"evidence"`
	NotEntitled  []string     `json:"not_entitled"` // spaces held but not released to the recipient's bureau
	Corrupt      int          `json:"corrupt"`      // envelopes left out: corrupt in this store
	Bytes        int64        `json:"bytes"`
}

// ImportRequest is `bundle import FILE`.
type ImportRequest struct {
	File     string `json:"file"` // absolute path
	Progress bool   `json:"progress,omitempty"`
}

// Skip is a run of envelopes of one author in one space that an import
// left out, and why (a reject reason).
type Skip struct {
	Space   string `json:"space"`
	Author  string `json:"author"`
	From    uint64 `json:"from"`
	To      uint64 `json:"to"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// ImportResult is what an import added and what it left out.
type ImportResult struct {
	File            string       `json:"file"`
	Exporter        string       `json:"exporter"`
	ExporterBureau  string       `json:"exporter_bureau"`
	Created         string       `json:"created"`
	Recipient       string       `json:"recipient,omitempty"`
	Envelopes       int          `json:"envelopes"`    // in the bundle
	Added           int          `json:"added"`        // newly stored
	AlreadyHeld     int          `json:"already_held"` // held before
	Skipped         int          `json:"skipped"`      // left out (see skips)
	Spaces          []SpaceCount `json:"spaces"`       // added, by space
	Certificates    int          `json:"certificates_added"`
	Revocations     int          `json:"revocations_added"`
	Evidence        int          `json:"evidence_added"`
	SkippedObjects  int          `json:"skipped_objects"` // certificates/revocations/evidence not accepted
	Skips           []Skip       `json:"skips"`
	SkipsOmitted    int          `json:"skips_omitted,omitempty"` // runs of skips not listed (over 4,096)
	ObjectSkipNotes []string     `json:"object_skips,omitempty"`
}

// Progress is one progress line of a long export or import.
type Progress struct {
	Phase string `json:"phase"` // export | verify | store
	Done  int64  `json:"done"`
	Total int64  `json:"total"`
	Unit  string `json:"unit"` // envelopes | bytes
}
