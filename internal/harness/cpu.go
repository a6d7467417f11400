package harness

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ProcessCPUMillis is the CPU time (user and system) process pid has used
// since it started, in ms; 0 where /proc cannot tell (not Linux, or the
// process is gone). Benchmarks report a phase's CPU as the difference over
// it: unlike wall time, it hardly depends on what else the machine runs.
func ProcessCPUMillis(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:] // the command may hold spaces and parentheses
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	// After the command: the state is f[0]; utime and stime, the line's
	// 14th and 15th fields, are f[11] and f[12], in clock ticks (100 a
	// second on Linux).
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) * 10
}
