package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// cli runs one authserver command in process against db and returns its
// standard output.
func cli(t *testing.T, db, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCmd(strings.NewReader(stdin), &out, &errOut)
	root.SetArgs(append(args, "--database", db))
	err := root.Execute()
	return out.String(), err
}

func mustCLI(t *testing.T, db, stdin string, args ...string) string {
	t.Helper()
	out, err := cli(t, db, stdin, args...)
	if err != nil {
		t.Fatalf("authserver %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func TestCLIOperatorWorkflow(t *testing.T) {
	t.Setenv("AUTH_KEY_ENCRYPTION_KEY", "")
	db := "sqlite:" + t.TempDir() + "/auth.db"
	const pw = "operator-Passphrase-42\n"

	out := mustCLI(t, db, pw, "bootstrap", "--operator-username", "ops", "--bcrypt-cost", "4")
	if !strings.Contains(out, "created operator ops") || !strings.Contains(out, "client_secret: ") {
		t.Fatalf("bootstrap: %s", out)
	}
	// Idempotent: nothing is created twice and no secret is shown again.
	out = mustCLI(t, db, pw, "bootstrap", "--operator-username", "ops", "--bcrypt-cost", "4")
	if !strings.Contains(out, "already exists") || strings.Contains(out, "client_secret") {
		t.Fatalf("second bootstrap: %s", out)
	}

	mustCLI(t, db, "", "tenant", "create", "--id", "district_health_dept_a", "--name", "District A")
	mustCLI(t, db, "Correct-Horse-Battery-9\n", "user", "create", "--tenant", "district_health_dept_a", "--username", "alice", "--role", "admin", "--bcrypt-cost", "4")
	mustCLI(t, db, "Correct-Horse-Battery-9\n", "user", "create", "--tenant", "district_health_dept_a", "--username", "bob", "--role", "analyst", "--bcrypt-cost", "4")

	// Policy: a common password is refused, and never taken from argv.
	if _, err := cli(t, db, "password1234\n", "user", "create", "--tenant", "district_health_dept_a", "--username", "carol", "--role", "analyst", "--bcrypt-cost", "4"); err == nil {
		t.Error("common password accepted")
	}
	// The last enabled admin cannot be disabled or demoted.
	if _, err := cli(t, db, "", "user", "disable", "--tenant", "district_health_dept_a", "--username", "alice"); err == nil {
		t.Error("last admin disabled")
	}
	if _, err := cli(t, db, "", "user", "set-role", "--tenant", "district_health_dept_a", "--username", "alice", "--role", "manager"); err == nil {
		t.Error("last admin demoted")
	}
	mustCLI(t, db, "", "user", "set-role", "--tenant", "district_health_dept_a", "--username", "bob", "--role", "manager")
	mustCLI(t, db, "", "user", "disable", "--tenant", "district_health_dept_a", "--username", "bob")
	out = mustCLI(t, db, "", "user", "list", "--tenant", "district_health_dept_a")
	if !strings.Contains(out, "bob") || !strings.Contains(out, "manager") || !strings.Contains(out, "true") {
		t.Errorf("user list: %s", out)
	}
	mustCLI(t, db, "New-Correct-Horse-77\n", "user", "reset-password", "--tenant", "district_health_dept_a", "--username", "bob", "--bcrypt-cost", "4")
	mustCLI(t, db, "", "session", "revoke", "--tenant", "district_health_dept_a", "--username", "bob", "--all")
	mustCLI(t, db, "", "session", "list", "--tenant", "district_health_dept_a", "--username", "bob")

	out = mustCLI(t, db, "", "client", "create", "--tenant", "district_health_dept_a", "--id", "dash", "--grants", "password,refresh_token", "--scopes", "forecasts:read")
	if !strings.Contains(out, "client_secret: ") {
		t.Fatalf("client create: %s", out)
	}
	out = mustCLI(t, db, "", "client", "rotate-secret", "--tenant", "district_health_dept_a", "--id", "dash", "--overlap", "1h")
	if !strings.Contains(out, "client_secret: ") {
		t.Errorf("rotate-secret: %s", out)
	}
	mustCLI(t, db, "", "client", "delete", "--tenant", "district_health_dept_a", "--id", "dash")
	mustCLI(t, db, "", "user", "delete", "--tenant", "district_health_dept_a", "--username", "bob")

	out = mustCLI(t, db, "", "audit", "list", "--tenant", "district_health_dept_a", "--json", "--limit", "1000")
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var e struct {
			Type  string `json:"type"`
			Actor string `json:"actor"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		if !strings.HasPrefix(e.Actor, "cli:") {
			t.Errorf("actor %q is not the CLI", e.Actor)
		}
		seen[e.Type] = true
	}
	for _, want := range []string{"user.created", "admin.user.updated", "admin.user.password_reset", "admin.client.secret_rotated", "admin.client.deleted", "admin.user.deleted"} {
		if !seen[want] {
			t.Errorf("audit lacks %s (have %v)", want, seen)
		}
	}
	mustCLI(t, db, "", "keys", "rotate")
	out = mustCLI(t, db, "", "keys", "list")
	if !strings.Contains(out, "active") {
		t.Errorf("keys list: %s", out)
	}
}

func TestEnvBindsConfigurationFlagsOnly(t *testing.T) {
	t.Setenv("AUTH_ADDR", "127.0.0.1:9999")
	t.Setenv("AUTH_ROLE", "admin")
	t.Setenv("AUTH_DATABASE_URL", "sqlite:/tmp/x.db")
	root := newRootCmd(strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{})
	serve, _, _ := root.Find([]string{"serve"})
	if err := serve.ParseFlags(nil); err != nil {
		t.Fatal(err)
	}
	if err := applyEnv(serve); err != nil {
		t.Fatal(err)
	}
	if got := serve.Flags().Lookup("addr").Value.String(); got != "127.0.0.1:9999" {
		t.Errorf("serve --addr from AUTH_ADDR = %q", got)
	}
	create, _, _ := root.Find([]string{"user", "create"})
	if err := create.ParseFlags(nil); err != nil {
		t.Fatal(err)
	}
	if err := applyEnv(create); err != nil {
		t.Fatal(err)
	}
	if got := create.Flags().Lookup("role").Value.String(); got != "" {
		t.Errorf("user create --role taken from AUTH_ROLE: %q", got)
	}
	if got := create.Flags().Lookup("database").Value.String(); got != "sqlite:/tmp/x.db" {
		t.Errorf("--database from AUTH_DATABASE_URL = %q", got)
	}
}

func TestValidateIssuer(t *testing.T) {
	for _, tc := range []struct {
		issuer string
		ok     bool
	}{
		{"http://127.0.0.1:8080", true},
		{"http://localhost:8080", true},
		{"https://auth.example.org", true},
		{"https://auth.example.org/tenant-x", true},
		{"http://auth.example.org", false},
		{"http://10.0.0.5:8080", false},
		{"https://auth.example.org/", false},
		{"https://auth.example.org?x=1", false},
		{"ftp://auth.example.org", false},
		{"auth.example.org", false},
	} {
		if err := validateIssuer(tc.issuer); (err == nil) != tc.ok {
			t.Errorf("validateIssuer(%q) = %v, want ok=%v", tc.issuer, err, tc.ok)
		}
	}
}
