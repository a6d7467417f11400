//go:build !unix

package w1

func cpuTime() float64 { return 0 }
