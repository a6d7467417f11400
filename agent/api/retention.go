package api

import "context"

// Retention (issue 16 item 1; docs/design.md §8, docs/format.md
// "Retention policy"): a space's owning bureau sets when its records are
// due for review and for erasure; officers extend a record (a review mark
// in its history) or let it lapse (deleted, the reason in its history).
const (
	// PathSpaceRetention sets a space's retention policy (officers of its
	// owning bureau only): POST RetentionPolicyRequest -> Space.
	PathSpaceRetention = "/v1/space/retention"
	// PathReview lists the records due for review: POST ReviewRequest ->
	// []ReviewDue.
	PathReview = "/v1/review"
	// PathReviewExtend marks a record reviewed and kept: POST
	// ReviewActionRequest -> Record.
	PathReviewExtend = "/v1/review/extend"
	// PathReviewLapse lets a record lapse (deletes it): POST
	// ReviewActionRequest -> Record.
	PathReviewLapse = "/v1/review/lapse"
)

// ReviewField is the reserved field a review mark is written to; its value
// is a JSON object {"action":"extend"|"lapse","reason":TEXT}.
const ReviewField = "_review"

// Review actions, in a review mark.
const (
	ReviewExtend = "extend"
	ReviewLapse  = "lapse"
)

// Retention is a space's retention policy (Space.Retention): records are
// due for review ReviewAfterDays after their last review, and for erasure
// EraseAfterDays after it (0: no erasure deadline).
type Retention struct {
	ReviewAfterDays int `json:"review_after_days"`
	EraseAfterDays  int `json:"erase_after_days"`
}

// RetentionPolicyRequest is `fieldsync space retention SPACE`; Off clears
// the policy (the day counts are then ignored).
type RetentionPolicyRequest struct {
	Space           string `json:"space"`
	Off             bool   `json:"off,omitempty"`
	ReviewAfterDays int    `json:"review_after_days,omitempty"`
	EraseAfterDays  int    `json:"erase_after_days,omitempty"`
}

// ReviewRequest is `fieldsync review [SPACE]`: every space if Space is "".
type ReviewRequest struct {
	Space string `json:"space,omitempty"`
}

// ReviewDue is one record due for review.
type ReviewDue struct {
	Space  string `json:"space"`
	Record string `json:"record"`
	// Since is when the record was last reviewed (its last review mark's
	// HLC time) or, never reviewed, its oldest live value's; RFC 3339.
	Since    string `json:"since"`
	AgeDays  int    `json:"age_days"`
	DueSince string `json:"due_since"` // Since + review-after, RFC 3339
	// Reviewed is true if Since is a review mark's time.
	Reviewed bool `json:"reviewed"`
	// EraseDue is true when the age passed the erase-after days.
	EraseDue bool `json:"erase_due"`
}

// ReviewActionRequest is `fieldsync review extend|lapse SPACE RECORD --reason TEXT`.
type ReviewActionRequest struct {
	Space  string `json:"space"`
	Record string `json:"record"`
	Reason string `json:"reason"`
	// Erase, with a lapse, also erases the record everywhere it reaches
	// after the delete (as PathRecordErase, with Reason): its past values
	// are cut from every envelope, not only deleted from the state.
	Erase bool `json:"erase,omitempty"`
}

// SetRetentionPolicy sets a space's retention policy (PathSpaceRetention).
func (c *Client) SetRetentionPolicy(ctx context.Context, req RetentionPolicyRequest) (Space, error) {
	return call[Space](ctx, c, PathSpaceRetention, req)
}

// Review lists the records due for review (PathReview).
func (c *Client) Review(ctx context.Context, req ReviewRequest) ([]ReviewDue, error) {
	return call[[]ReviewDue](ctx, c, PathReview, req)
}

// ReviewExtend marks a record reviewed and kept (PathReviewExtend).
func (c *Client) ReviewExtend(ctx context.Context, req ReviewActionRequest) (Record, error) {
	return call[Record](ctx, c, PathReviewExtend, req)
}

// ReviewLapse lets a record lapse: it is deleted (PathReviewLapse).
func (c *Client) ReviewLapse(ctx context.Context, req ReviewActionRequest) (Record, error) {
	return call[Record](ctx, c, PathReviewLapse, req)
}
