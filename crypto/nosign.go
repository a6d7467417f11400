//go:build !fieldsync_bench_nosign

package crypto

// benchNoSign is false in every real build (nosign_bench.go).
const benchNoSign = false
