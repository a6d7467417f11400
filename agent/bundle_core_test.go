package agent

import (
	"errors"
	"fieldsync/agent/api"
	"fmt"
	"testing"

	"fieldsync/agent/bundle"
)

// The bundle package names the reject reasons it gives as the agent does:
// they are keys of status.rejected.
func TestBundleReasonsAreTheAgents(t *testing.T) {
	for _, c := range []struct{ bundle, agent string }{
		{bundle.ReasonMalformed, RejectMalformed},
		{bundle.ReasonUnknown, RejectUnknown},
		{bundle.ReasonSignature, RejectSignature},
		{bundle.ReasonGap, RejectGap},
		{bundle.ReasonNoRouting, RejectNoRouting},
	} {
		if c.bundle != c.agent {
			t.Errorf("bundle reason %q, agent reason %q", c.bundle, c.agent)
		}
	}
}

// An error the bundle package makes is also the agent's API error of the
// same kind, with its message unchanged.
func TestBundleErrorKinds(t *testing.T) {
	for _, c := range []struct {
		from, to error
		code     string
	}{
		{bundle.ErrBadRequest, ErrBadRequest, api.CodeBadRequest},
		{bundle.ErrNotFound, ErrNotFound, api.CodeNotFound},
		{bundle.ErrForbidden, ErrForbidden, api.CodeForbidden},
		{bundle.ErrTooLarge, errTooLarge, api.CodeTooLarge},
		{bundle.ErrRefused, ErrRefused, api.CodeRefused},
	} {
		err := bundleError(fmt.Errorf("%w: x", c.from))
		if !errors.Is(err, c.to) || !errors.Is(err, c.from) {
			t.Errorf("%v: not both %v and %v", err, c.from, c.to)
		}
		if err.Error() != c.from.Error()+": x" {
			t.Errorf("message %q changed", err)
		}
		if code, _ := bundleErrorCode(err); code != c.code {
			t.Errorf("%v: code %s, want %s", err, code, c.code)
		}
	}
}
