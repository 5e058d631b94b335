package admin

import (
	"net/http"
	"net/url"
	"time"

	"github.com/epitwin/epitwin/authserver/internal/accounts"
	"github.com/epitwin/epitwin/authserver/internal/storage"
)

// clientJSON is a client as the API shows it: never a secret hash. The
// secret itself appears once, in the answer that created it.
type clientJSON struct {
	ID         string    `json:"id"`
	TenantID   string    `json:"tenant_id"`
	Grants     []string  `json:"grants"`
	Scopes     []string  `json:"scopes"`
	Audiences  []string  `json:"audiences"`
	Role       string    `json:"role,omitempty"`
	Introspect bool      `json:"introspect"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	// PreviousSecretExpiresAt is when the secret replaced by the latest
	// rotation stops working.
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at,omitempty"`
	ClientSecret            string     `json:"client_secret,omitempty"`
}

func clientView(c *storage.Client, secret string) clientJSON {
	nonNil := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	v := clientJSON{ID: c.ID, TenantID: c.TenantID, Grants: nonNil(c.GetGrantTypes()), Scopes: nonNil(c.GetScopes()),
		Audiences: nonNil(c.GetAudience()), Role: c.Role, Introspect: c.Introspect,
		CreatedAt: c.CreatedAt.UTC(), UpdatedAt: c.UpdatedAt.UTC(), ClientSecret: secret}
	if len(c.RotatedSecretHash) > 0 && c.RotatedSecretExpiresAt != nil {
		t := c.RotatedSecretExpiresAt.UTC()
		v.PreviousSecretExpiresAt = &t
	}
	return v
}

// clientsHandler serves /admin/tenants/{t}/clients.
type clientsHandler struct {
	acc     *accounts.Service
	overlap time.Duration
}

func (h *clientsHandler) create(w http.ResponseWriter, r *http.Request, c *call) error {
	var body struct {
		ID         string   `json:"id"`
		Grants     []string `json:"grants"`
		Scopes     []string `json:"scopes"`
		Audiences  []string `json:"audiences"`
		Role       string   `json:"role"`
		Introspect bool     `json:"introspect"`
	}
	if err := decode(r, &body); err != nil {
		return c.record(r.Context(), accounts.EventAdminClientCreated, "", err)
	}
	if err := required([2]string{"id", body.ID}); err != nil {
		return c.record(r.Context(), accounts.EventAdminClientCreated, "", err)
	}
	cl, secret, err := h.acc.CreateClientAs(r.Context(), c.actor, accounts.CreateClientInput{
		TenantID: c.tenant, ID: body.ID, Grants: body.Grants, Scopes: body.Scopes, Audiences: body.Audiences,
		Role: body.Role, Introspect: body.Introspect})
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/admin/tenants/"+url.PathEscape(c.tenant)+"/clients/"+url.PathEscape(cl.ID))
	writeJSON(w, http.StatusCreated, clientView(cl, secret))
	return nil
}

func (h *clientsHandler) list(w http.ResponseWriter, r *http.Request, c *call) error {
	cs, err := h.acc.ListClients(r.Context(), c.actor, c.tenant)
	if err != nil {
		return err
	}
	out := page[clientJSON]{Items: make([]clientJSON, 0, len(cs))}
	for i := range cs {
		out.Items = append(out.Items, clientView(&cs[i], ""))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (h *clientsHandler) rotateSecret(w http.ResponseWriter, r *http.Request, c *call) error {
	cl, secret, err := h.acc.RotateClientSecret(r.Context(), c.actor, c.tenant, r.PathValue("id"), h.overlap)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, clientView(cl, secret))
	return nil
}

func (h *clientsHandler) delete(w http.ResponseWriter, r *http.Request, c *call) error {
	if err := h.acc.DeleteClient(r.Context(), c.actor, c.tenant, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
