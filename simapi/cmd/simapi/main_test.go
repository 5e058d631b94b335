package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestEnvNames(t *testing.T) {
	for flag, want := range map[string]string{
		"addr": "SIM_ADDR", "issuer": "SIM_ISSUER", "database": "SIM_DATABASE_URL",
		"introspection-client-id": "SIM_INTROSPECTION_CLIENT_ID", "revocation-cache-ttl": "SIM_REVOCATION_CACHE_TTL",
	} {
		if got := envName(flag); got != want {
			t.Errorf("envName(%q) = %q, want %q", flag, got, want)
		}
	}
}

func TestServeFlagsDefaultsAndEnv(t *testing.T) {
	root := newRootCmd(envOf(map[string]string{"SIM_ADDR": "127.0.0.1:9999", "SIM_REVOCATION_CACHE_TTL": "7s", "SIM_ISSUER": "http://env"}))
	serve, _, err := root.Find([]string{"serve"})
	if err != nil {
		t.Fatal(err)
	}
	fs := serve.Flags()
	if err := fs.Parse([]string{"--issuer", "http://flag"}); err != nil {
		t.Fatal(err)
	}
	if err := bindEnv(fs, envOf(map[string]string{"SIM_ADDR": "127.0.0.1:9999", "SIM_REVOCATION_CACHE_TTL": "7s", "SIM_ISSUER": "http://env"})); err != nil {
		t.Fatal(err)
	}
	get := func(n string) string { return fs.Lookup(n).Value.String() }
	if get("addr") != "127.0.0.1:9999" || get("issuer") != "http://flag" || get("revocation-cache-ttl") != (7*time.Second).String() {
		t.Fatalf("addr %s issuer %s ttl %s", get("addr"), get("issuer"), get("revocation-cache-ttl"))
	}
	if get("audience") != "simapi" || get("introspection-grace") != "1m0s" || get("database") != "sqlite:./var/simapi.db" {
		t.Fatalf("defaults: audience %s grace %s database %s", get("audience"), get("introspection-grace"), get("database"))
	}
}

func TestIntrospectionSecretOnlyFromEnv(t *testing.T) {
	root := newRootCmd(envOf(nil))
	root.SetArgs([]string{"serve", "--introspection-client-id", "simapi", "--database", "sqlite::memory:"})
	err := root.ExecuteContext(context.Background())
	if err == nil || !strings.Contains(err.Error(), "SIM_INTROSPECTION_CLIENT_SECRET") {
		t.Fatalf("err = %v", err)
	}
	root = newRootCmd(envOf(nil))
	root.SetArgs([]string{"serve", "--introspection-client-secret", "x"})
	if err := root.ExecuteContext(context.Background()); err == nil {
		t.Fatal("a secret flag was accepted")
	}
}

func TestMigrateCommand(t *testing.T) {
	root := newRootCmd(envOf(map[string]string{"SIM_DATABASE_URL": "sqlite:" + t.TempDir() + "/m.db"}))
	root.SetArgs([]string{"migrate"})
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
}
