package api

import "context"

// Delivery receipts (docs/design.md §8, docs/format.md "Receipt"): a device
// of another bureau that opens a change may sign a receipt, as an envelope
// of its own log in the space, sealed like a change; the space's policy
// says whether it does.
const (
	// PathReceipts lists the receipts held for a space or one record:
	// POST ReceiptsRequest -> []Receipt.
	PathReceipts = "/v1/receipts"
	// PathSpaceReceipts sets a space's receipt policy (officers of its
	// owning bureau only): POST ReceiptPolicyRequest -> Space.
	PathSpaceReceipts = "/v1/space/receipts"
)

// Receipt policies of a space (Space.Receipts, ReceiptPolicyRequest).
const (
	ReceiptsOff       = "off"        // no receipts (the default)
	ReceiptsPerChange = "per-change" // one receipt per change received
	ReceiptsPerBatch  = "per-batch"  // one receipt per received batch, naming a range per author
)

// Receipt statuses.
const (
	ReceiptValid = "valid" // signed by a member; names an envelope this device holds, by its ID
	// ReceiptUnverified: the receipt names changes this device does not
	// hold yet; it cannot tell whether they are the ones it will get.
	ReceiptUnverified = "unverified"
	// ReceiptInvalid: the receipt names an envelope other than the one
	// held (a forged or mistaken hash), its own author's changes, or its
	// author's certificate is unknown here.
	ReceiptInvalid = "invalid"
)

// ReceiptsRequest is `fieldsync receipts SPACE [RECORD]`.
type ReceiptsRequest struct {
	Space string `json:"space"`
	// Record, if set, lists one row per change of the record that a
	// receipt names; otherwise one row per range of each receipt.
	Record string `json:"record,omitempty"`
}

// Receipt is one row of `receipts`: a receiving device says it opened
// Author's changes FromSeq..ToSeq (one change when equal) at Time.
type Receipt struct {
	Space   string `json:"space"`
	Author  string `json:"author"`   // device ID of the changes' author
	FromSeq uint64 `json:"from_seq"` // first seq of the author's log the receipt names
	ToSeq   uint64 `json:"to_seq"`   // last seq (its envelope ID is in the receipt)
	Record  string `json:"record,omitempty"`
	Device  string `json:"device"`  // the receiving device that signed the receipt
	Bureau  string `json:"bureau"`  // its bureau, from its certificate (never from the receipt)
	Officer string `json:"officer"` // its officer, from its profile in the space
	// ReceiptSeq is the receipt's own seq in the receiving device's log.
	ReceiptSeq uint64 `json:"receipt_seq"`
	HLC        string `json:"hlc"`  // when the receipt was written
	Time       string `json:"time"` // the HLC's wall time, RFC 3339
	Status     string `json:"status"`
	Error      string `json:"error,omitempty"`
}

// HistoryReceipt is a valid receipt of one change, in HistoryEntry.Receipts.
type HistoryReceipt struct {
	Device  string `json:"device"`
	Bureau  string `json:"bureau"`
	Officer string `json:"officer"`
	HLC     string `json:"hlc"`
	Time    string `json:"time"`
}

// ReceiptPolicyRequest is `fieldsync space receipts SPACE off|per-change|per-batch`.
type ReceiptPolicyRequest struct {
	Space    string `json:"space"`
	Receipts string `json:"receipts"`
}

// Receipts lists receipts (PathReceipts).
func (c *Client) Receipts(ctx context.Context, req ReceiptsRequest) ([]Receipt, error) {
	return call[[]Receipt](ctx, c, PathReceipts, req)
}

// SetReceiptPolicy sets a space's receipt policy (PathSpaceReceipts).
func (c *Client) SetReceiptPolicy(ctx context.Context, req ReceiptPolicyRequest) (Space, error) {
	return call[Space](ctx, c, PathSpaceReceipts, req)
}
