//go:build race

package agent

// raceOn: the race detector is on (tests that measure bytes sent relax
// what timing changes, see TestLargeValueResumesFromRelay).
const raceOn = true
