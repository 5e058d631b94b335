package admin

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/epitwin/epitwin/authserver/internal/accounts"
	"github.com/epitwin/epitwin/authserver/internal/storage"
)

// userJSON is a user as the API shows it: never the password hash.
type userJSON struct {
	ID        string    `json:"id"`
	TenantID  string    `json:"tenant_id"`
	Username  string    `json:"username"`
	Role      string    `json:"role"`
	Disabled  bool      `json:"disabled"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func userView(u *storage.User) userJSON {
	return userJSON{ID: u.ID, TenantID: u.TenantID, Username: u.Username, Role: u.Role, Disabled: u.Disabled,
		CreatedAt: u.CreatedAt.UTC(), UpdatedAt: u.UpdatedAt.UTC()}
}

// page is the shape of every paginated listing.
type page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// usersHandler serves /admin/tenants/{t}/users.
type usersHandler struct {
	acc *accounts.Service
}

func (h *usersHandler) create(w http.ResponseWriter, r *http.Request, c *call) error {
	var body struct {
		Username string `json:"username"`
		Password string `json:"password"`
		Role     string `json:"role"`
	}
	if err := decode(r, &body); err != nil {
		return c.record(r.Context(), accounts.EventAdminUserCreated, "", err)
	}
	if err := required([2]string{"username", body.Username}, [2]string{"password", body.Password}, [2]string{"role", body.Role}); err != nil {
		return c.record(r.Context(), accounts.EventAdminUserCreated, body.Username, err)
	}
	u, err := h.acc.CreateUserAs(r.Context(), c.actor, accounts.CreateUserInput{
		TenantID: c.tenant, Username: body.Username, Password: body.Password, Role: body.Role})
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/admin/tenants/"+url.PathEscape(c.tenant)+"/users/"+url.PathEscape(u.Username))
	writeJSON(w, http.StatusCreated, userView(u))
	return nil
}

func (h *usersHandler) list(w http.ResponseWriter, r *http.Request, c *call) error {
	p, err := pageParams(r)
	if err != nil {
		return err
	}
	f := accounts.UserFilter{Role: r.URL.Query().Get("role")}
	if v := r.URL.Query().Get("disabled"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil || (v != "true" && v != "false") {
			return badRequest("query parameter \"disabled\" must be true or false")
		}
		f.Disabled = &b
	}
	res, err := h.acc.ListUsers(r.Context(), c.actor, c.tenant, f, p)
	if err != nil {
		return err
	}
	out := page[userJSON]{Items: make([]userJSON, 0, len(res.Items)), NextCursor: res.NextCursor}
	for i := range res.Items {
		out.Items = append(out.Items, userView(&res.Items[i]))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (h *usersHandler) get(w http.ResponseWriter, r *http.Request, c *call) error {
	u, err := h.acc.GetUser(r.Context(), c.actor, c.tenant, r.PathValue("username"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, userView(u))
	return nil
}

func (h *usersHandler) update(w http.ResponseWriter, r *http.Request, c *call) error {
	username := r.PathValue("username")
	var body struct {
		Role     *string `json:"role"`
		Disabled *bool   `json:"disabled"`
	}
	if err := decode(r, &body); err != nil {
		return c.record(r.Context(), accounts.EventAdminUserUpdated, username, err)
	}
	u, err := h.acc.UpdateUser(r.Context(), c.actor, c.tenant, username, accounts.UpdateUserInput{Role: body.Role, Disabled: body.Disabled})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, userView(u))
	return nil
}

func (h *usersHandler) resetPassword(w http.ResponseWriter, r *http.Request, c *call) error {
	username := r.PathValue("username")
	var body struct {
		Password string `json:"password"`
	}
	if err := decode(r, &body); err != nil {
		return c.record(r.Context(), accounts.EventAdminPasswordReset, username, err)
	}
	if err := required([2]string{"password", body.Password}); err != nil {
		return c.record(r.Context(), accounts.EventAdminPasswordReset, username, err)
	}
	if err := h.acc.ResetPassword(r.Context(), c.actor, c.tenant, username, body.Password); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *usersHandler) delete(w http.ResponseWriter, r *http.Request, c *call) error {
	if err := h.acc.DeleteUser(r.Context(), c.actor, c.tenant, r.PathValue("username")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// sessionJSON is one refresh family of a user.
type sessionJSON struct {
	ID         string    `json:"id"`
	ClientID   string    `json:"client_id"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// sessionsHandler serves /admin/tenants/{t}/users/{username}/sessions.
type sessionsHandler struct {
	acc *accounts.Service
}

func (h *sessionsHandler) list(w http.ResponseWriter, r *http.Request, c *call) error {
	fs, err := h.acc.ListSessions(r.Context(), c.actor, c.tenant, r.PathValue("username"))
	if err != nil {
		return err
	}
	out := page[sessionJSON]{Items: make([]sessionJSON, 0, len(fs))}
	for _, f := range fs {
		out.Items = append(out.Items, sessionJSON{ID: f.ID, ClientID: f.ClientID, CreatedAt: f.CreatedAt,
			LastUsedAt: f.LastUsedAt, ExpiresAt: f.ExpiresAt})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (h *sessionsHandler) revoke(w http.ResponseWriter, r *http.Request, c *call) error {
	if err := h.acc.RevokeSession(r.Context(), c.actor, c.tenant, r.PathValue("username"), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *sessionsHandler) revokeAll(w http.ResponseWriter, r *http.Request, c *call) error {
	if _, err := h.acc.RevokeAllSessions(r.Context(), c.actor, c.tenant, r.PathValue("username")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
