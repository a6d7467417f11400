package api

import "context"

// PathFind searches the records of the spaces this device can read, across
// scripts and spellings (docs/find.md): POST FindRequest -> FindResponse.
const PathFind = "/v1/find"

// FindRequest is `fieldsync find QUERY [--space S] [--field F] [--limit N]`.
type FindRequest struct {
	Query string `json:"query"`
	// Space restricts the search to one space (ID, unique prefix or unique
	// name, as SpaceRef); empty: every readable space.
	Space string `json:"space,omitempty"`
	// Field restricts the match to one field name; empty: any field.
	Field string `json:"field,omitempty"`
	// Limit caps the hits returned (0: 10; at most 1000).
	Limit int `json:"limit,omitempty"`
}

// FindHit is one matching record, best first.
type FindHit struct {
	Space     string `json:"space"`      // space ID
	SpaceName string `json:"space_name"` // its name
	Record    string `json:"record"`     // record ID
	Field     string `json:"field"`      // the best-matching field
	// Kind is the field's kind: "register", "set" or "note" (Field is then
	// "notes" and Value the best-matching note).
	Kind  string  `json:"kind"`
	Value string  `json:"value"` // that field's text as stored
	Score float64 `json:"score"` // in (0, 1]: 1 is an exact match after normalisation
}

// FindResponse is the ranked hits and how many documents were searched.
type FindResponse struct {
	Query    string    `json:"query"`
	Hits     []FindHit `json:"hits"`
	Searched int       `json:"searched"` // records in the spaces searched
	// Building is true while the index is still being built after the
	// agent started (hits may be missing until it is done).
	Building bool `json:"building"`
}

// Find runs a search (PathFind).
func (c *Client) Find(ctx context.Context, req FindRequest) (FindResponse, error) {
	var out FindResponse
	err := c.Call(ctx, PathFind, req, &out)
	return out, err
}
