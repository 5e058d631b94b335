package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Bounds of the polling loops. They are generous on purpose: they only cap
// how long a failing test waits, a passing one returns as soon as the
// condition holds.
const (
	readyTimeout = 30 * time.Second
	pollInterval = 100 * time.Millisecond
	stopTimeout  = 20 * time.Second
)

// The simapi settings every pair runs with (see the brief of these tests).
const (
	revocationCacheTTL = time.Second
	introspectionGrace = 3 * time.Second
)

// Fixture names. Passwords and secrets are random per run.
const (
	tenantA        = "tenant_a"
	tenantB        = "tenant_b"
	tenantPlatform = "platform"
	webA           = "web-a"
	webB           = "web-b"
	svcA           = "svc-a"         // client credentials, role analyst, scope forecasts:read only
	webAOther      = "web-a-authsrv" // password grant, audience authserver only
	introspectID   = "simapi-rs"
	allScopes      = "forecasts:read simulations:run data:export observations:write users:manage billing:read"
)

type fixtureUser struct{ tenant, name, role string }

var (
	userRO      = fixtureUser{tenantA, "ro_a", "read-only"}
	userAnalyst = fixtureUser{tenantA, "analyst_a", "analyst"}
	userManager = fixtureUser{tenantA, "manager_a", "manager"}
	userAdmin   = fixtureUser{tenantA, "admin_a", "admin"}
	userB       = fixtureUser{tenantB, "manager_b", "manager"}
	allUsers    = []fixtureUser{userRO, userAnalyst, userManager, userAdmin, userB}
)

var (
	password         = randomString()
	clientSecret     = randomString() // of web-a, web-b and svc-a
	introspectSecret = randomString()
)

func randomString() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b) // 48 characters, safe in Basic auth and forms
}

// ---- binaries and the seeded template database ----

var (
	rootDir string // removed by TestMain

	buildOnce sync.Once
	buildErr  error
	goMissing bool
	authBin   string
	simBin    string

	seedOnce sync.Once
	seedErr  error
	seedDir  string // a seeded authserver data directory, copied by every pair
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "epitwin-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	rootDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// binaries builds authserver and simapi once per test binary run; it
// skips the test when no go command is available.
func binaries(t *testing.T) {
	t.Helper()
	buildOnce.Do(func() {
		goCmd, err := exec.LookPath("go")
		if err != nil {
			goMissing = true
			return
		}
		wd, err := os.Getwd() // go test runs in the package directory: simapi/e2e
		if err != nil {
			buildErr = err
			return
		}
		simDir := filepath.Dir(wd)
		authDir := filepath.Join(filepath.Dir(simDir), "authserver")
		authBin = filepath.Join(rootDir, "bin", "authserver")
		simBin = filepath.Join(rootDir, "bin", "simapi")
		builds := []struct{ dir, out, pkg string }{
			{authDir, authBin, "./cmd/authserver"},
			{simDir, simBin, "./cmd/simapi"},
		}
		var wg sync.WaitGroup
		errs := make([]error, len(builds))
		for i, b := range builds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cmd := exec.Command(goCmd, "build", "-o", b.out, b.pkg)
				cmd.Dir = b.dir
				if out, err := cmd.CombinedOutput(); err != nil {
					errs[i] = fmt.Errorf("go build %s in %s: %v\n%s", b.pkg, b.dir, err, out)
				}
			}()
		}
		wg.Wait()
		buildErr = errors.Join(errs...)
	})
	if goMissing {
		t.Skip("e2e: the go command is not available, cannot build authserver and simapi")
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// childEnv is the environment of every server process: ours without any
// AUTH_* or SIM_* variable, so that nothing from the caller's shell leaks
// into the configuration.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "AUTH_") || strings.HasPrefix(kv, "SIM_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// authCLI runs one authserver admin command against the database in dir.
func authCLI(dir, stdin string, args ...string) (string, error) {
	args = append(args, "--database", "sqlite:"+filepath.Join(dir, "auth.db"))
	cmd := exec.Command(authBin, args...)
	cmd.Env = childEnv()
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		return "", err
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			// The arguments never hold a secret: those go through stdin.
			return stdout.String(), fmt.Errorf("authserver %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		return stdout.String(), fmt.Errorf("authserver %s: timed out", strings.Join(args, " "))
	}
	return stdout.String(), nil
}

// seededDir returns a data directory holding a seeded authserver database
// (and its key-encryption key). It is seeded once and copied by each pair,
// so that pairs are independent but pay for the seeding only once.
func seededDir(t *testing.T) string {
	t.Helper()
	binaries(t)
	seedOnce.Do(func() {
		dir := filepath.Join(rootDir, "seed")
		if seedErr = os.MkdirAll(dir, 0o700); seedErr != nil {
			return
		}
		type step struct {
			stdin string // secrets go through stdin, never argv
			args  []string
		}
		steps := []step{
			{"", []string{"tenant", "create", "--id", tenantA, "--name", "District A"}},
			{"", []string{"tenant", "create", "--id", tenantB, "--name", "District B"}},
			{"", []string{"tenant", "create", "--id", tenantPlatform, "--name", "Platform"}},
		}
		for _, u := range allUsers {
			steps = append(steps, step{password + "\n",
				[]string{"user", "create", "--tenant", u.tenant, "--username", u.name, "--role", u.role, "--bcrypt-cost", "4"}})
		}
		for _, c := range [][]string{
			{"--tenant", tenantA, "--id", webA, "--grants", "password,refresh_token", "--scopes", allScopes, "--audience", "simapi"},
			{"--tenant", tenantB, "--id", webB, "--grants", "password,refresh_token", "--scopes", allScopes, "--audience", "simapi"},
			{"--tenant", tenantA, "--id", webAOther, "--grants", "password", "--scopes", allScopes, "--audience", "authserver"},
			{"--tenant", tenantA, "--id", svcA, "--grants", "client_credentials", "--scopes", "forecasts:read", "--audience", "simapi", "--role", "analyst"},
		} {
			steps = append(steps, step{clientSecret + "\n", append([]string{"client", "create", "--secret-stdin"}, c...)})
		}
		steps = append(steps, step{introspectSecret + "\n",
			[]string{"client", "create", "--secret-stdin", "--tenant", tenantPlatform, "--id", introspectID, "--introspect", "--audience", "simapi"}})
		for _, s := range steps {
			if _, seedErr = authCLI(dir, s.stdin, s.args...); seedErr != nil {
				return
			}
		}
		seedDir = dir
	})
	if seedErr != nil {
		t.Fatal("seeding the authserver database:", seedErr)
	}
	return seedDir
}

func copyDir(src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// freePort picks a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// ---- processes ----

// syncBuffer is a bytes.Buffer safe for the exec copy goroutine and readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is one running server process.
type proc struct {
	name   string
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
	err    error // of Wait, valid once exited is closed
}

// startProc starts bin; it is killed in t.Cleanup if still running, and its
// stderr is logged when the test failed.
func startProc(t *testing.T, name, bin string, args, env []string) *proc {
	t.Helper()
	p := &proc{name: name, out: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		if p.running() {
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("---- output of %s (pid %d) ----\n%s", p.name, p.cmd.Process.Pid, tail(p.out.String(), 8<<10))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...\n" + s[len(s)-n:]
}

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits for the process to exit (killing it after
// stopTimeout).
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		t.Errorf("%s did not stop within %s of SIGTERM", p.name, stopTimeout)
	}
	if p.err != nil {
		t.Logf("%s exited: %v", p.name, p.err)
	}
}

// ---- a pair of servers ----

// pair is one authserver and one simapi, each with its own database in dir.
type pair struct {
	dir      string
	authPort int
	authURL  string // also the issuer
	simURL   string
	simPort  int
	auth     *proc
	sim      *proc
	// noIntrospection runs simapi without an introspection client, i.e.
	// with offline verification only.
	noIntrospection bool
}

// newPair prepares (but does not start) a pair over a copy of the seeded
// authserver database.
func newPair(t *testing.T) *pair {
	t.Helper()
	seed := seededDir(t)
	dir := t.TempDir() // before any process, so it is removed after them
	if err := copyDir(seed, dir); err != nil {
		t.Fatal(err)
	}
	p := &pair{dir: dir, authPort: freePort(t), simPort: freePort(t)}
	p.authURL = fmt.Sprintf("http://127.0.0.1:%d", p.authPort)
	p.simURL = fmt.Sprintf("http://127.0.0.1:%d", p.simPort)
	return p
}

// startedPair returns a pair with both servers running and ready.
func startedPair(t *testing.T) *pair {
	t.Helper()
	p := newPair(t)
	p.start(t)
	return p
}

// start starts both servers and waits until they are ready.
func (p *pair) start(t *testing.T) {
	t.Helper()
	p.startAuth(t)
	p.startSim(t)
	p.waitReady(t, p.authURL, p.auth)
	p.waitReady(t, p.simURL, p.sim)
}

func (p *pair) authDB() string { return "sqlite:" + filepath.Join(p.dir, "auth.db") }

func (p *pair) startAuth(t *testing.T) {
	t.Helper()
	p.auth = startProc(t, "authserver", authBin, []string{
		"serve", "--addr", fmt.Sprintf("127.0.0.1:%d", p.authPort), "--issuer", p.authURL,
		"--bcrypt-cost", "4", "--log-level", "warn", "--database", p.authDB(),
	}, childEnv())
}

func (p *pair) startSim(t *testing.T) {
	t.Helper()
	args := []string{
		"serve", "--addr", fmt.Sprintf("127.0.0.1:%d", p.simPort), "--issuer", p.authURL,
		"--audience", "simapi",
		"--revocation-cache-ttl", revocationCacheTTL.String(), "--introspection-grace", introspectionGrace.String(),
		"--database", "sqlite:" + filepath.Join(p.dir, "sim.db"), "--log-level", "info",
	}
	env := childEnv()
	if !p.noIntrospection {
		args = append(args, "--introspection-client-id", introspectID)
		env = append(env, "SIM_INTROSPECTION_CLIENT_SECRET="+introspectSecret)
	} else {
		args = append(args, "--no-revocation-check")
	}
	p.sim = startProc(t, "simapi", simBin, args, env)
}

// keys runs "authserver keys ARGS" against the pair's database.
func (p *pair) keys(t *testing.T, args ...string) string {
	t.Helper()
	out, err := authCLI(p.dir, "", append([]string{"keys"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitReady polls base+"/readyz" until 200.
func (p *pair) waitReady(t *testing.T, base string, pr *proc) {
	t.Helper()
	waitStatus(t, base+"/readyz", http.StatusOK, pr)
}

// waitStatus polls GET u until it answers want, failing early if pr exits.
func waitStatus(t *testing.T, u string, want int, pr *proc) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	last := "no answer"
	for time.Now().Before(deadline) {
		if pr != nil && !pr.running() {
			t.Fatalf("%s exited while waiting for %s: %v", pr.name, u, pr.err)
		}
		resp, err := httpClient.Get(u)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(pollInterval)
	}
	t.Fatalf("GET %s did not answer %d within %s (last: %s)", u, want, readyTimeout, last)
}

// ---- HTTP ----

var httpClient = &http.Client{Timeout: 15 * time.Second}

// result is a fully read response.
type result struct {
	status int
	header http.Header
	body   []byte
}

func (r result) String() string {
	return fmt.Sprintf("%d %s WWW-Authenticate=%q", r.status, bytes.TrimSpace(r.body), r.header.Get("WWW-Authenticate"))
}

// call sends one request to simapi with the bearer token (none if empty).
func call(t *testing.T, method, u, token, contentType string, body []byte) result {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, u, err)
	}
	return result{status: resp.StatusCode, header: resp.Header, body: b}
}

func (p *pair) get(t *testing.T, path, token string) result {
	t.Helper()
	return call(t, http.MethodGet, p.simURL+path, token, "", nil)
}

// eventually polls cond every pollInterval until it returns true or limit
// passes; it returns whether cond held and the last description.
func eventually(limit time.Duration, cond func() (bool, string)) (bool, string) {
	deadline := time.Now().Add(limit)
	var last string
	for {
		ok, desc := cond()
		last = desc
		if ok || time.Now().After(deadline) {
			return ok, last
		}
		time.Sleep(pollInterval)
	}
}

// isInvalidToken reports a 401 with an RFC 6750 invalid_token challenge.
func isInvalidToken(r result) bool {
	ch := r.header.Get("WWW-Authenticate")
	return r.status == http.StatusUnauthorized && strings.HasPrefix(ch, "Bearer") && strings.Contains(ch, `error="invalid_token"`)
}

// ---- tokens ----

func (p *pair) oauthCtx() context.Context {
	return context.WithValue(context.Background(), oauth2.HTTPClient, httpClient)
}

func (p *pair) webConfig(clientID string, scopes ...string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     clientID,
		ClientSecret: clientSecret,
		Endpoint:     oauth2.Endpoint{TokenURL: p.authURL + "/oauth2/token", AuthStyle: oauth2.AuthStyleInHeader},
		Scopes:       scopes,
	}
}

func webClientOf(u fixtureUser) string {
	if u.tenant == tenantB {
		return webB
	}
	return webA
}

// login runs the password grant for u through its tenant's web client.
func (p *pair) login(t *testing.T, u fixtureUser, scopes ...string) *oauth2.Token {
	t.Helper()
	tok, err := p.webConfig(webClientOf(u), scopes...).PasswordCredentialsToken(p.oauthCtx(), u.name, password)
	if err != nil {
		t.Fatalf("password grant for %s: %v", u.name, err)
	}
	return tok
}

// refresh redeems a refresh token at the client u logged in with.
func (p *pair) refresh(u fixtureUser, refreshToken string) (*oauth2.Token, error) {
	ts := p.webConfig(webClientOf(u)).TokenSource(p.oauthCtx(), &oauth2.Token{RefreshToken: refreshToken, Expiry: time.Unix(1, 0)})
	return ts.Token()
}

func (p *pair) ccConfig(scopes ...string) *clientcredentials.Config {
	return &clientcredentials.Config{
		ClientID: svcA, ClientSecret: clientSecret, TokenURL: p.authURL + "/oauth2/token",
		Scopes: scopes, AuthStyle: oauth2.AuthStyleInHeader,
	}
}

// clientCredentials gets a token for svc-a.
func (p *pair) clientCredentials(t *testing.T, scopes ...string) *oauth2.Token {
	t.Helper()
	tok, err := p.ccConfig(scopes...).Token(p.oauthCtx())
	if err != nil {
		t.Fatalf("client credentials grant for %s: %v", svcA, err)
	}
	return tok
}

// revoke calls RFC 7009 revocation with client_secret_basic.
func (p *pair) revoke(t *testing.T, clientID, token, hint string) result {
	t.Helper()
	form := url.Values{"token": {token}}
	if hint != "" {
		form.Set("token_type_hint", hint)
	}
	req, err := http.NewRequest(http.MethodPost, p.authURL+"/oauth2/revoke", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(clientSecret))
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: b}
}

// jwtHeader decodes the JOSE header of a compact JWS.
func jwtHeader(t *testing.T, token string) map[string]any {
	t.Helper()
	seg, _, _ := strings.Cut(token, ".")
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatalf("decode token header: %v", err)
	}
	var h map[string]any
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatalf("decode token header: %v", err)
	}
	return h
}

func kidOf(t *testing.T, token string) string {
	t.Helper()
	kid, _ := jwtHeader(t, token)["kid"].(string)
	if kid == "" {
		t.Fatal("access token has no kid")
	}
	return kid
}

// ---- simapi payloads ----

var simulateBody = []byte(`{"population":100000,"initial_exposed":10,"initial_infected":5,"initial_recovered":0,"beta":0.3,"sigma":0.2,"gamma":0.1,"days":30}`)

// simulate runs a simulation and returns the forecast id.
func (p *pair) simulate(t *testing.T, token string) string {
	t.Helper()
	r := call(t, http.MethodPost, p.simURL+"/v1/simulate", token, "application/json", simulateBody)
	if r.status != http.StatusCreated {
		t.Fatalf("POST /v1/simulate: %s", r)
	}
	var out struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil || out.ID == "" {
		t.Fatalf("POST /v1/simulate: no id in %s (%v)", r.body, err)
	}
	return out.ID
}

type meResponse struct {
	Sub         string   `json:"sub"`
	ClientID    string   `json:"client_id"`
	TenantID    string   `json:"tenant_id"`
	Role        string   `json:"role"`
	Scope       []string `json:"scope"`
	Permissions []string `json:"permissions"`
}

func (p *pair) me(t *testing.T, token string) meResponse {
	t.Helper()
	r := p.get(t, "/v1/me", token)
	if r.status != http.StatusOK {
		t.Fatalf("GET /v1/me: %s", r)
	}
	var m meResponse
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("GET /v1/me: %v", err)
	}
	return m
}
