package server

import (
	"net/http"
	"strings"
	"time"

	"github.com/epitwin/epitwin/authserver/internal/storage"
	"github.com/epitwin/epitwin/authserver/internal/throttle"
)

// clientGuard throttles client-authentication failures per client id and
// per address, the same way logins are throttled, so a client secret
// cannot be guessed online. A nil guard throttles nothing.
type clientGuard struct {
	l *throttle.Limiter
}

// claimedClient is the client id a request authenticates as, without
// checking anything.
func claimedClient(r *http.Request) string {
	if id, _, ok := r.BasicAuth(); ok {
		return id
	}
	return r.PostForm.Get("client_id")
}

// clientIPKey counts client-authentication failures per address apart from
// password failures (so a locked-out login does not read as a client
// error), under the per-address threshold ("ip:" keys).
func clientIPKey(r *http.Request) string {
	return "ip:client/" + strings.TrimPrefix(throttle.IPKey(storage.RequestInfoFrom(r.Context()).IP), "ip:")
}

// wait returns how long the caller must wait before its client may try to
// authenticate again (0: go ahead).
func (g clientGuard) wait(r *http.Request) time.Duration {
	if g.l == nil {
		return 0
	}
	ctx := r.Context()
	var longest time.Duration
	keys := []string{clientIPKey(r)}
	if id := claimedClient(r); id != "" {
		keys = append(keys, throttle.ClientKey(id))
	}
	for _, k := range keys {
		if d, _ := g.l.Check(ctx, k); d > longest {
			longest = d
		}
	}
	return longest
}

// failed records a failed client authentication.
func (g clientGuard) failed(r *http.Request) {
	if g.l == nil {
		return
	}
	ctx := r.Context()
	g.l.Fail(ctx, clientIPKey(r))
	if id := claimedClient(r); id != "" {
		g.l.Fail(ctx, throttle.ClientKey(id))
	}
}

// succeeded clears the client's failures (not the address's).
func (g clientGuard) succeeded(r *http.Request) {
	if g.l == nil {
		return
	}
	if id := claimedClient(r); id != "" {
		g.l.Reset(r.Context(), throttle.ClientKey(id))
	}
}

// throttled answers a throttled client authentication: 429, Retry-After,
// in the OAuth error format, and records it.
func throttled(w http.ResponseWriter, r *http.Request, store *storage.Store, m *metrics, endpoint string, wait time.Duration) {
	_ = store.AppendAudit(r.Context(), &storage.AuditEvent{Type: storage.EventClientAuthFailed, ClientID: truncate(claimedClient(r), 128),
		Outcome: storage.OutcomeFailure, Details: `{"endpoint":"` + endpoint + `","reason":"throttled"}`})
	m.failures.WithLabelValues(endpoint, "throttled").Inc()
	writeOAuthError(w, http.StatusTooManyRequests, "invalid_client", "too many failed client authentications; retry later", wait)
}

// authFailed records a failed client authentication: the throttle counts
// it and the audit log keeps it.
func authFailed(r *http.Request, store *storage.Store, guard clientGuard, endpoint string) {
	guard.failed(r)
	_ = store.AppendAudit(r.Context(), &storage.AuditEvent{Type: storage.EventClientAuthFailed, ClientID: truncate(claimedClient(r), 128),
		Outcome: storage.OutcomeFailure, Details: `{"endpoint":"` + endpoint + `"}`})
}
