// Command fieldsync is the offline-first field sync agent and its CLI: it runs
// the agent, and talks to a running agent over its local API to read and write
// records, inspect conflicts and history, and resolve them.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr))
}
