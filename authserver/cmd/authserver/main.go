// Command authserver is EpiTwin's OAuth 2.0 authorization server and its
// operator CLI: serve, migrate, and the tenant, user, client and keys
// commands.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "authserver:", err)
		os.Exit(1)
	}
}

func run() error {
	return newRootCmd(os.Stdin, os.Stdout, os.Stderr).Execute()
}
