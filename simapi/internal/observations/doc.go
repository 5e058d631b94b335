// Package observations parses untrusted uploads of daily surveillance
// counts (CSV or JSON) into validated [Observation] values, enforcing size
// limits and reporting the first problem as a [ParseError].
package observations
