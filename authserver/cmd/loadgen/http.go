package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// httpClient talks to the authserver over a keep-alive transport.
type httpClient struct {
	base string
	tr   *http.Transport
	hc   *http.Client
}

func newHTTPClient(base string, workers int, timeout time.Duration) *httpClient {
	tr := newTransport(workers)
	return &httpClient{
		base: base,
		tr:   tr,
		hc: &http.Client{
			Transport: tr,
			Timeout:   timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
}

func (c *httpClient) close() { c.tr.CloseIdleConnections() }

// basicAuth is the client_secret_basic header: RFC 6749 §2.3.1 form-encodes
// the id and secret before base64.
func basicAuth(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

// statusError is a non-2xx answer.
type statusError struct {
	status int
	body   string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.status, e.body)
}

// postForm POSTs a form and decodes a 2xx JSON answer into out.
func (c *httpClient) postForm(ctx context.Context, path, auth, form string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, strings.NewReader(form))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", auth)
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read %s response: %w", path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b := strings.TrimSpace(string(body))
		if len(b) > 200 {
			b = b[:200] + "..."
		}
		return &statusError{status: resp.StatusCode, body: b}
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return fmt.Errorf("decode %s response: %w", path, err)
		}
	}
	return nil
}

// waitReady polls GET /readyz until it answers 200 or the timeout passes.
func (c *httpClient) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/readyz", nil)
		if err != nil {
			return err
		}
		resp, err := c.hc.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET /readyz: HTTP %d", resp.StatusCode)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("server at %s not ready after %s: %w", c.base, timeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// tokenResponse is the part of a token response loadgen checks.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
}

// token POSTs a grant and checks the tokens the grant must return.
func (c *httpClient) token(ctx context.Context, auth, form string, wantRefresh bool) (*tokenResponse, error) {
	var tr tokenResponse
	if err := c.postForm(ctx, "/oauth2/token", auth, form, &tr); err != nil {
		return nil, err
	}
	if tr.AccessToken == "" {
		return nil, errors.New("token response without access_token")
	}
	if wantRefresh && tr.RefreshToken == "" {
		return nil, errors.New("token response without refresh_token")
	}
	return &tr, nil
}

func (b *bench) scopeParam(v url.Values) url.Values {
	if b.cfg.scope != "" {
		v.Set("scope", b.cfg.scope)
	}
	return v
}

func (b *bench) ccForm() string {
	return b.scopeParam(url.Values{"grant_type": {"client_credentials"}}).Encode()
}

func (b *bench) passwordForm(i int) string {
	user := b.cfg.usernames[i%len(b.cfg.usernames)]
	return b.scopeParam(url.Values{
		"grant_type": {"password"}, "username": {user}, "password": {b.cfg.password},
	}).Encode()
}

func noCleanup() {}

// prepareCC: every request is a client_credentials grant.
func (b *bench) prepareCC(context.Context) (workerFunc, func(), error) {
	auth := basicAuth(b.cfg.ccClientID, b.cfg.ccClientSecret)
	form := b.ccForm()
	return func(context.Context, int) (op, error) {
		return func(ctx context.Context) error {
			_, err := b.http.token(ctx, auth, form, false)
			return err
		}, nil
	}, noCleanup, nil
}

// preparePassword: every request is a password grant (bcrypt-bound).
func (b *bench) preparePassword(context.Context) (workerFunc, func(), error) {
	auth := basicAuth(b.cfg.appClientID, b.cfg.appClientSecret)
	return func(_ context.Context, i int) (op, error) {
		form := b.passwordForm(i)
		return func(ctx context.Context) error {
			_, err := b.http.token(ctx, auth, form, false)
			return err
		}, nil
	}, noCleanup, nil
}

// prepareRefresh: each worker logs in once (unmeasured) and then follows
// its own rotation chain, always presenting the newest refresh token.
func (b *bench) prepareRefresh(context.Context) (workerFunc, func(), error) {
	auth := basicAuth(b.cfg.appClientID, b.cfg.appClientSecret)
	return func(ctx context.Context, i int) (op, error) {
		login := b.passwordForm(i)
		tr, err := b.http.token(ctx, auth, login, true)
		if err != nil {
			return nil, fmt.Errorf("worker %d: password grant for its refresh token: %w", i, err)
		}
		rt := tr.RefreshToken
		return func(ctx context.Context) error {
			form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}.Encode()
			tr, err := b.http.token(ctx, auth, form, true)
			if err == nil {
				rt = tr.RefreshToken
				return nil
			}
			// The chain may be dead now (or the rotation may have
			// happened without us seeing the answer): start a new
			// family so that one failure is counted once.
			if again, lerr := b.http.token(ctx, auth, login, true); lerr == nil {
				rt = again.RefreshToken
			}
			return fmt.Errorf("refresh: %w", err)
		}, nil
	}, noCleanup, nil
}

// introspectResponse is the part of an introspection answer loadgen checks.
type introspectResponse struct {
	Active bool `json:"active"`
}

// prepareIntrospect obtains a pool of access tokens, then every request
// introspects the next one round-robin and expects active:true.
func (b *bench) prepareIntrospect(ctx context.Context) (workerFunc, func(), error) {
	ccAuth := basicAuth(b.cfg.ccClientID, b.cfg.ccClientSecret)
	form := b.ccForm()
	forms := make([]string, b.cfg.introspectTokens)
	for i := range forms {
		tr, err := b.http.token(ctx, ccAuth, form, false)
		if err != nil {
			return nil, nil, fmt.Errorf("obtain access token %d for the introspection pool: %w", i, err)
		}
		forms[i] = url.Values{"token": {tr.AccessToken}, "token_type_hint": {"access_token"}}.Encode()
	}
	auth := basicAuth(b.cfg.introspectClientID, b.cfg.introspectClientSecret)
	var next atomic.Uint64
	return func(context.Context, int) (op, error) {
		return func(ctx context.Context) error {
			n := next.Add(1) - 1
			var ir introspectResponse
			if err := b.http.postForm(ctx, "/oauth2/introspect", auth, forms[n%uint64(len(forms))], &ir); err != nil {
				return err
			}
			if !ir.Active {
				return errors.New("introspection answered active:false for a live token")
			}
			return nil
		}, nil
	}, noCleanup, nil
}
