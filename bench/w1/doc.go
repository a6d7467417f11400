// Package w1 is the W1 workload of BENCH.md ("two officers edit offline,
// then meet"): its deterministic reference generator, shared by every
// layer, and the runner for the crdt layer.
//
// For `fieldsync bench w1 --layer crdt [--size S|L] [--json]`, the CLI calls
//
//	w1.RunCRDT(w1.SizeByName(name), os.Stdout, jsonFlag)
//
// which prints the table for people (and, with jsonOut, the JSON line of
// BENCH.md) and returns the Result. The agent layer reuses Generate.
package w1
