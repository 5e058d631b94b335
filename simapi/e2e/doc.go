// Package e2e holds end-to-end tests that build authserver and simapi,
// run both as real processes on loopback ports and check the security
// properties of the pair over HTTP only. It has no non-test code.
package e2e
