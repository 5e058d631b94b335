package admin

import (
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/epitwin/epitwin/authserver/internal/accounts"
	"github.com/epitwin/epitwin/authserver/internal/keys"
	"github.com/epitwin/epitwin/authserver/internal/storage"
)

// auditHandler serves GET /admin/tenants/{t}/audit. The log is
// append-only: no route changes it.
type auditHandler struct {
	acc *accounts.Service
}

func (h *auditHandler) list(w http.ResponseWriter, r *http.Request, c *call) error {
	p, err := pageParams(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	f := accounts.AuditFilter{Actor: q.Get("actor"), Subject: q.Get("subject"), Type: q.Get("type")}
	if f.Since, err = timeParam(r, "since"); err != nil {
		return err
	}
	if f.Until, err = timeParam(r, "until"); err != nil {
		return err
	}
	res, err := h.acc.ListAudit(r.Context(), c.actor, c.tenant, f, p)
	if err != nil {
		return err
	}
	out := page[storage.AuditEvent]{Items: res.Items, NextCursor: res.NextCursor}
	if out.Items == nil {
		out.Items = []storage.AuditEvent{}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// platformHandler serves the operator-only routes: tenants and keys.
type platformHandler struct {
	acc  *accounts.Service
	keys KeyAdmin
}

func (h *platformHandler) createTenant(w http.ResponseWriter, r *http.Request, c *call) error {
	var body struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	if err := decode(r, &body); err != nil {
		return c.record(r.Context(), accounts.EventAdminTenantCreated, "", err)
	}
	if err := required([2]string{"id", body.ID}, [2]string{"name", body.Name}); err != nil {
		return c.record(r.Context(), accounts.EventAdminTenantCreated, body.ID, err)
	}
	t, err := h.acc.CreateTenantAs(r.Context(), c.actor, body.ID, body.Name)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/admin/tenants/"+url.PathEscape(t.ID))
	writeJSON(w, http.StatusCreated, t)
	return nil
}

func (h *platformHandler) listTenants(w http.ResponseWriter, r *http.Request, c *call) error {
	ts, err := h.acc.ListTenants(r.Context(), c.actor)
	if err != nil {
		return err
	}
	if ts == nil {
		ts = []storage.Tenant{}
	}
	writeJSON(w, http.StatusOK, page[storage.Tenant]{Items: ts})
	return nil
}

func (h *platformHandler) listKeys(w http.ResponseWriter, r *http.Request, _ *call) error {
	if h.keys == nil {
		return &httpError{status: http.StatusNotFound, detail: "key management is not enabled"}
	}
	ks, err := h.keys.List(r.Context())
	if err != nil {
		return err
	}
	if ks == nil {
		ks = []keys.KeyInfo{}
	}
	writeJSON(w, http.StatusOK, page[keys.KeyInfo]{Items: ks})
	return nil
}

// keyJSON is a newly created signing key (never its private part).
type keyJSON struct {
	KID         string    `json:"kid"`
	Alg         string    `json:"alg"`
	CreatedAt   time.Time `json:"created_at"`
	ActivatesAt time.Time `json:"activates_at"`
}

func (h *platformHandler) rotateKey(w http.ResponseWriter, r *http.Request, c *call) error {
	if h.keys == nil {
		return &httpError{status: http.StatusNotFound, detail: "key management is not enabled"}
	}
	k, err := h.keys.Rotate(r.Context())
	if err != nil {
		return c.acc.Record(r.Context(), c.actor, accounts.EventAdminKeyRotated, accounts.PlatformTenant, "", nil, err)
	}
	_ = c.acc.Record(r.Context(), c.actor, accounts.EventAdminKeyRotated, accounts.PlatformTenant, k.KID, map[string]any{"alg": k.Alg}, nil)
	writeJSON(w, http.StatusCreated, keyJSON{KID: k.KID, Alg: k.Alg, CreatedAt: k.CreatedAt.UTC(), ActivatesAt: k.ActivatesAt.UTC()})
	return nil
}

func (h *platformHandler) revokeKey(w http.ResponseWriter, r *http.Request, c *call) error {
	if h.keys == nil {
		return &httpError{status: http.StatusNotFound, detail: "key management is not enabled"}
	}
	kid := r.PathValue("kid")
	err := h.keys.Revoke(r.Context(), kid)
	if err := c.acc.Record(r.Context(), c.actor, accounts.EventAdminKeyRevoked, accounts.PlatformTenant, kid, nil, keyErr(err)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// keyErr turns an unknown kid into a domain NotFound, so that it is both
// answered and audited as such.
func keyErr(err error) error {
	if err == nil {
		return nil
	}
	if isKeyNotFound(err) {
		return &accounts.Error{Kind: accounts.NotFound, Msg: "signing key not found", Err: err}
	}
	return err
}

func isKeyNotFound(err error) bool { return errors.Is(err, keys.ErrNotFound) }
