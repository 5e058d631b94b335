package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// allScenarios lists the scenarios in their default order.
var allScenarios = []string{"cc", "refresh", "introspect", "password", "insert-floor", "bcrypt-floor"}

// config is the parsed command line.
type config struct {
	target         string
	workers        int
	duration       time.Duration
	warmup         time.Duration
	requestTimeout time.Duration
	readyTimeout   time.Duration
	database       string
	bcryptCost     int
	scenarios      []string
	jsonOut        bool

	scope string

	ccClientID, ccClientSecret                 string
	appClientID, appClientSecret               string
	introspectClientID, introspectClientSecret string
	usernames                                  []string
	password                                   string
	introspectTokens                           int

	serverPID   int
	postgresCPU bool

	createDatabase, dropDatabase string
}

// envOr returns the environment variable name, or def when it is unset.
func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var scenarios, usernames string
	fs.StringVar(&c.target, "target", "http://127.0.0.1:18090", "base URL of the authserver (loopback only)")
	fs.IntVar(&c.workers, "workers", 16, "concurrent workers (and HTTP connections / database connections)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measured window of each scenario")
	fs.DurationVar(&c.warmup, "warmup", 2*time.Second, "unmeasured warm-up before each scenario's window")
	fs.DurationVar(&c.requestTimeout, "request-timeout", 30*time.Second, "timeout of a single request")
	fs.DurationVar(&c.readyTimeout, "ready-timeout", 30*time.Second, "how long to wait for GET /readyz before the HTTP scenarios")
	fs.StringVar(&c.database, "database", envOr("LOADGEN_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"),
		"PostgreSQL URL for insert-floor (env LOADGEN_DATABASE_URL)")
	fs.IntVar(&c.bcryptCost, "bcrypt-cost", 12, "bcrypt cost of bcrypt-floor (use the server's --bcrypt-cost)")
	fs.StringVar(&scenarios, "scenarios", strings.Join(allScenarios, ","), "comma-separated scenarios: "+strings.Join(allScenarios, ", "))
	fs.BoolVar(&c.jsonOut, "json", false, "print the results as JSON instead of a table")
	fs.StringVar(&c.scope, "scope", "forecasts:read", "scope requested by the token grants (empty: none)")
	fs.StringVar(&c.ccClientID, "cc-client-id", "bench-cc", "client of the client_credentials scenario and of the introspection token pool")
	fs.StringVar(&c.ccClientSecret, "cc-client-secret", os.Getenv("LOADGEN_CC_CLIENT_SECRET"), "its secret (env LOADGEN_CC_CLIENT_SECRET)")
	fs.StringVar(&c.appClientID, "app-client-id", "bench-app", "client of the password and refresh scenarios")
	fs.StringVar(&c.appClientSecret, "app-client-secret", os.Getenv("LOADGEN_APP_CLIENT_SECRET"), "its secret (env LOADGEN_APP_CLIENT_SECRET)")
	fs.StringVar(&c.introspectClientID, "introspect-client-id", "bench-rs", "resource-server client of the introspect scenario")
	fs.StringVar(&c.introspectClientSecret, "introspect-client-secret", os.Getenv("LOADGEN_INTROSPECT_CLIENT_SECRET"), "its secret (env LOADGEN_INTROSPECT_CLIENT_SECRET)")
	fs.StringVar(&usernames, "username", "bench-user", "user(s) of the password and refresh scenarios; a comma-separated list is spread over the workers")
	fs.StringVar(&c.password, "password", os.Getenv("LOADGEN_USER_PASSWORD"), "the users' password (env LOADGEN_USER_PASSWORD)")
	fs.IntVar(&c.introspectTokens, "introspect-tokens", 64, "access tokens obtained up front and introspected round-robin")
	fs.IntVar(&c.serverPID, "server-pid", 0, "pid of the authserver process, to report its CPU time per request (0: not reported)")
	fs.BoolVar(&c.postgresCPU, "postgres-cpu", true, "report the CPU time per request of the local PostgreSQL processes serving --database (read from /proc)")
	fs.StringVar(&c.createDatabase, "create-database", "", "only create this database through --database and exit (for hosts without psql)")
	fs.StringVar(&c.dropDatabase, "drop-database", "", "only drop this database through --database and exit (for hosts without psql)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if c.createDatabase != "" || c.dropDatabase != "" {
		return c, nil
	}
	if c.workers < 1 || c.workers > 4096 {
		return nil, errors.New("--workers must be between 1 and 4096")
	}
	if c.duration <= 0 || c.warmup < 0 || c.requestTimeout <= 0 {
		return nil, errors.New("--duration and --request-timeout must be positive and --warmup not negative")
	}
	if c.introspectTokens < 1 {
		return nil, errors.New("--introspect-tokens must be at least 1")
	}
	for _, s := range strings.Split(scenarios, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(allScenarios, s) {
			return nil, fmt.Errorf("unknown scenario %q (want %s)", s, strings.Join(allScenarios, ", "))
		}
		if !slices.Contains(c.scenarios, s) {
			c.scenarios = append(c.scenarios, s)
		}
	}
	if len(c.scenarios) == 0 {
		return nil, errors.New("--scenarios is empty")
	}
	for _, u := range strings.Split(usernames, ",") {
		if u = strings.TrimSpace(u); u != "" {
			c.usernames = append(c.usernames, u)
		}
	}
	if err := checkLoopback(c.target); err != nil {
		return nil, err
	}
	c.target = strings.TrimRight(c.target, "/")
	need := func(cond bool, what string) error {
		if cond {
			return fmt.Errorf("%s is required by the selected scenarios", what)
		}
		return nil
	}
	for _, s := range c.scenarios {
		var err error
		switch s {
		case "cc":
			err = need(c.ccClientSecret == "", "--cc-client-secret")
		case "introspect":
			err = errors.Join(need(c.ccClientSecret == "", "--cc-client-secret"),
				need(c.introspectClientSecret == "", "--introspect-client-secret"))
		case "refresh", "password":
			err = errors.Join(need(c.appClientSecret == "", "--app-client-secret"),
				need(c.password == "", "--password"), need(len(c.usernames) == 0, "--username"))
		case "insert-floor":
			err = need(c.database == "", "--database")
		case "bcrypt-floor":
			if c.bcryptCost < 4 || c.bcryptCost > 31 {
				err = errors.New("--bcrypt-cost must be between 4 and 31")
			}
		}
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}

// checkLoopback refuses targets that are not on the loopback interface:
// a load generator must not be pointed at someone else's server by mistake.
func checkLoopback(target string) error {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("--target must be an http(s) URL, got %q", target)
	}
	if u.RawQuery != "" || (u.Path != "" && u.Path != "/") {
		return fmt.Errorf("--target must be a base URL without path or query, got %q", target)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("--target %q is not a loopback address; loadgen only generates load on this machine", target)
}

func run() error {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch {
	case cfg.createDatabase != "":
		return adminDatabase(ctx, cfg.database, "CREATE", cfg.createDatabase)
	case cfg.dropDatabase != "":
		return adminDatabase(ctx, cfg.database, "DROP", cfg.dropDatabase)
	}

	rep := report{
		Target: cfg.target, Workers: cfg.workers, Duration: cfg.duration.String(),
		Warmup: cfg.warmup.String(), BcryptCost: cfg.bcryptCost,
	}
	b := newBench(cfg)
	defer b.close()
	progress := os.Stderr
	for _, name := range cfg.scenarios {
		if err := ctx.Err(); err != nil {
			return err
		}
		fmt.Fprintf(progress, "loadgen: %-12s %d workers, %s warm-up + %s ...\n", name, cfg.workers, cfg.warmup, cfg.duration)
		res := b.runScenario(ctx, name)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fmt.Fprintf(progress, "loadgen: %-12s %.1f req/s, %d error(s)\n", name, res.RPS, res.Errors)
		rep.Scenarios = append(rep.Scenarios, res)
	}
	rep.computeRatios()

	if cfg.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		rep.writeText(os.Stdout)
	}
	if n := rep.failedScenarios(); n > 0 {
		rep.writeErrors(os.Stderr)
		return fmt.Errorf("%d scenario(s) had errors: these results are NOT valid", n)
	}
	return nil
}
