package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"fieldsync/agent/api"
	"fieldsync/agent/bundle"
	"fieldsync/crypto"
)

// Sneakernet bundles (docs/design.md §6, docs/bundle.md): the format and the
// passes of want, export and import live in package bundle, which reaches
// the agent only through bundleCore (bundle_core.go). Here: the API paths,
// types and routes, the client, and the methods the API calls.
//
// The agent reads and writes the files itself (the CLI passes absolute
// paths over the owner-only socket): a bundle is streamed from the store to
// the file and from the file to the store, never held in memory whole.

// ErrRefused is a bundle or want file refused whole; nothing of it was stored.
var ErrRefused = bundle.ErrRefused

func init() {
	apiExtensions = append(apiExtensions, func(a *Agent, mux *http.ServeMux) {
		post(a, mux, api.PathBundleWant, func(req api.BundleWantRequest) (any, error) { return a.WriteWant(req) })
		bundleRoute(a, mux, api.PathBundleExport, func(req api.BundleExportRequest) bool { return req.Progress },
			func(ctx context.Context, req api.BundleExportRequest, p func(api.BundleProgress)) (any, error) {
				return a.ExportBundle(ctx, req, p)
			})
		bundleRoute(a, mux, api.PathBundleImport, func(req api.BundleImportRequest) bool { return req.Progress },
			func(ctx context.Context, req api.BundleImportRequest, p func(api.BundleProgress)) (any, error) {
				return a.ImportBundle(ctx, req, p)
			})
	})
}

// bundleLine is one line of a streamed (progress) response.
type bundleLine = api.ProgressLine[api.BundleProgress]

// bundleRoute registers a long-running bundle method. Without progress it
// answers like every other method; with progress the answer is NDJSON:
// progress lines, then one line with the result or the error.
func bundleRoute[T any](a *Agent, mux *http.ServeMux, path string, wantsProgress func(T) bool, fn func(context.Context, T, func(api.BundleProgress)) (any, error)) {
	mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
		var req T
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, a.cfg.MaxRequestBytes))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			a.replyBundle(w, nil, fmt.Errorf("%w: malformed JSON request: %v", ErrBadRequest, err))
			return
		}
		if !wantsProgress(req) {
			v, err := fn(r.Context(), req, nil)
			a.replyBundle(w, v, err)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		enc := json.NewEncoder(w)
		flusher, _ := w.(http.Flusher)
		last := time.Time{}
		progress := func(p api.BundleProgress) {
			// At most ten lines a second, and the last one always.
			if now := time.Now(); now.Sub(last) >= 100*time.Millisecond || p.Done == p.Total {
				last = now
				enc.Encode(bundleLine{Progress: &p})
				if flusher != nil {
					flusher.Flush()
				}
			}
		}
		v, err := fn(r.Context(), req, progress)
		if err != nil {
			code, _ := bundleErrorCode(err)
			enc.Encode(bundleLine{Error: &api.ErrorDetail{Code: code, Message: err.Error()}})
			return
		}
		b, _ := json.Marshal(v)
		enc.Encode(bundleLine{Result: b})
	})
}

func bundleErrorCode(err error) (string, int) {
	if errors.Is(err, ErrRefused) {
		return api.CodeRefused, api.HTTPStatus(api.CodeRefused)
	}
	return errorCode(err)
}

func (a *Agent) replyBundle(w http.ResponseWriter, v any, err error) {
	if err == nil || !errors.Is(err, ErrRefused) {
		a.reply(w, v, err)
		return
	}
	code, status := bundleErrorCode(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(api.ErrorBody{Error: api.ErrorDetail{Code: code, Message: err.Error()}})
}

// bundleLimits are the limits an import enforces and an export respects
// (crypto.DefaultBundleLimits; tests lower them).
var bundleLimits = crypto.DefaultBundleLimits()

// WriteWant writes this device's want file: its version vector of every
// space it holds, signed by its device key, with its certificate.
func (a *Agent) WriteWant(req api.BundleWantRequest) (api.BundleWantResult, error) {
	res, err := bundle.WriteWant(bundleCore{a}, req)
	return res, bundleError(err)
}

// ExportBundle writes a bundle (bundle.Export): the certificates,
// revocations and fork evidence this device knows, and the envelopes of the
// chosen spaces — all of them, or, given the receiver's want file, those it
// lacks of the spaces it is entitled to. progress may be nil. When ctx ends
// (the client went away) the export stops and leaves no file.
func (a *Agent) ExportBundle(ctx context.Context, req api.BundleExportRequest, progress func(api.BundleProgress)) (api.BundleExportResult, error) {
	res, err := bundle.Export(ctx, bundleCore{a}, bundleLimits, req, progress)
	return res, bundleError(err)
}

// ImportBundle verifies a bundle whole and then stores what it adds
// (bundle.Import): a damaged or tampered file, an untrusted exporter or a
// bundle over a limit is refused whole (ErrRefused) and nothing is stored.
// When ctx ends (the client went away) the import stops between envelopes,
// leaving whole verified envelopes that importing again completes.
func (a *Agent) ImportBundle(ctx context.Context, req api.BundleImportRequest, progress func(api.BundleProgress)) (api.BundleImportResult, error) {
	res, err := bundle.Import(ctx, bundleCore{a}, bundleLimits, req, progress)
	return res, bundleError(err)
}

// bundleError gives an error of the bundle package the agent's API error of
// the same kind too (its message unchanged), so that errorCode maps it.
func bundleError(err error) error {
	for _, k := range []struct{ from, to error }{
		{bundle.ErrBadRequest, ErrBadRequest},
		{bundle.ErrNotFound, ErrNotFound},
		{bundle.ErrForbidden, ErrForbidden},
		{bundle.ErrTooLarge, errTooLarge},
	} {
		if errors.Is(err, k.from) {
			return &kindError{err: err, kind: k.to}
		}
	}
	return err
}

// kindError is err, which is also kind.
type kindError struct{ err, kind error }

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.err, e.kind} }
