// Command loadgen load-tests a running authserver over loopback HTTP and
// compares its throughput with two floors measured on the same machine:
// single-row INSERTs into the same PostgreSQL database (insert-floor) and
// bare bcrypt comparisons at the server's cost (bcrypt-floor).
//
// Each scenario runs its workers for --warmup, then for --duration; only
// requests that complete inside the measured window count towards
// throughput and latency. Errors (transport failures, non-2xx answers,
// active:false where an active token was expected) are counted over the
// whole run, printed loudly, and make loadgen exit non-zero. The ratio
// targets are reported with PASS/FAIL but do not change the exit status.
//
// Secrets may be given by flag or, to keep them out of argv, by the
// environment variables named in each flag's help.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}
