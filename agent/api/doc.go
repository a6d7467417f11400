// Package api is the agent's local API as its callers see it (docs/api.md is
// the contract): the request and response types of every method and their
// paths, the error codes and the HTTP statuses they travel with, and Client,
// which calls a running agent over its Unix socket. The agent's HTTP
// handlers answer with these same types, so each JSON shape (docs/design.md
// §8) is defined once.
//
// The API is RPC-style: `POST /v1/<method>` with a JSON body (GET for the
// read-only methods that take no arguments), so record IDs and names of any
// script need no URL escaping. Errors are HTTP 4xx/5xx with ErrorBody.
//
// The package imports nothing of fieldsync, only the standard library: the
// CLI's commands, the test harness, benchmarks and end-to-end tests talk to
// an agent through it without importing the agent's store, sync and
// crypto. Bundle methods (agent.BundleExport and co.) stream progress
// through CallProgress.
package api
