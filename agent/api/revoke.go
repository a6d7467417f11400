package api

// Revocation API (docs/api.md): the CLI asks the agent for the cut-offs it
// holds (prepare), signs the revocation with the bureau key — which never
// reaches the agent — and submits it.
const (
	PathRevokePrepare = "/v1/revoke/prepare" // POST RevokePrepareRequest -> RevokePlan
	PathRevoke        = "/v1/revoke"         // POST RevokeSubmitRequest -> RevokeResult
)

// RevokePrepareRequest names the device to revoke (an ID or a unique prefix
// of ≥ 6 characters of a device this agent knows) and explicit cut-offs,
// each "SPACE:SEQ" with SPACE a space reference or "*".
type RevokePrepareRequest struct {
	Device  string   `json:"device"`
	Cutoffs []string `json:"cutoffs,omitempty"`
}

// RevokePlan is what the bureau key is asked to sign.
type RevokePlan struct {
	Device string `json:"device"` // full device ID
	Bureau string `json:"bureau"` // the device's bureau fingerprint (the signer must be it)
	Role   string `json:"role"`
	// Cutoffs maps space ID to the highest seq that stays valid: those
	// this agent holds of the device, overridden by explicit ones.
	Cutoffs map[string]uint64 `json:"cutoffs"`
	// DefaultCutoff applies to every space not in Cutoffs (0 unless '*:N').
	DefaultCutoff uint64 `json:"default_cutoff"`
}

// RevokeSubmitRequest carries a signed revocation (binary, base64).
type RevokeSubmitRequest struct {
	Revocation string `json:"revocation"`
}

// RevokeResult says what the revocation did here.
type RevokeResult struct {
	Device  string            `json:"device"`
	Added   bool              `json:"added"` // false: this agent held it already
	Cutoffs map[string]uint64 `json:"cutoffs"`
	Default uint64            `json:"default_cutoff"`
	// Dropped lists the envelopes past the cut-offs that this agent held
	// and removed (they are rejected everywhere).
	Dropped []Gap `json:"dropped"`
}
