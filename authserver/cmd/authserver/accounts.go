package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/epitwin/epitwin/authserver/internal/accounts"
	"github.com/epitwin/epitwin/authserver/internal/oauth"
	"github.com/epitwin/epitwin/authserver/internal/storage"
)

// cliActor names the operator in the audit log.
func cliActor() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return "cli:" + name
}

// service opens the database and returns an accounts service. withSecrets
// also loads the key-encryption key (needed to hash client secrets).
func (g *globals) service(ctx context.Context, withSecrets bool, bcryptCost int) (*accounts.Service, func(), error) {
	db, err := g.openDB(ctx)
	if err != nil {
		return nil, nil, err
	}
	svc := &accounts.Service{Store: storage.New(db, nil)}
	if bcryptCost > 0 {
		if svc.Passwords, err = oauth.NewPasswords(bcryptCost); err != nil {
			db.Close()
			return nil, nil, err
		}
	}
	if withSecrets {
		kek, err := loadKEK(db)
		if err != nil {
			db.Close()
			return nil, nil, err
		}
		key, err := oauth.DeriveKey(kek, "client-secret-hash")
		if err != nil {
			db.Close()
			return nil, nil, err
		}
		if svc.Secrets, err = oauth.NewSecretHasher(key); err != nil {
			db.Close()
			return nil, nil, err
		}
	}
	return svc, func() { db.Close() }, nil
}

func newTenantCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "tenant", Short: "Manage tenants"}
	var id, name string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a tenant",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withService(cmd, false, 0, func(ctx context.Context, svc *accounts.Service) error {
				t, err := svc.CreateTenant(ctx, cliActor(), id, name)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "created tenant %s (%s)\n", t.ID, t.Name)
				return nil
			})
		},
	}
	create.Flags().StringVar(&id, "id", "", "tenant id, e.g. district_health_dept_a")
	create.Flags().StringVar(&name, "name", "", "display name")
	_ = create.MarkFlagRequired("id")
	_ = create.MarkFlagRequired("name")
	list := &cobra.Command{
		Use:   "list",
		Short: "List tenants",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withService(cmd, false, 0, func(ctx context.Context, svc *accounts.Service) error {
				ts, err := svc.Store.ListTenants(ctx)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tNAME\tCREATED")
				for _, t := range ts {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", t.ID, t.Name, t.CreatedAt.Format("2006-01-02T15:04:05Z"))
				}
				return tw.Flush()
			})
		},
	}
	cmd.AddCommand(create, list)
	return cmd
}

// readSecret reads one line from stdin: without echo from a terminal,
// otherwise as piped. Secrets are never taken from argv, where other users
// of the machine can see them.
func readSecret(in io.Reader, errOut io.Writer, prompt string) (string, error) {
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(errOut, prompt)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(errOut)
		if err != nil {
			return "", err
		}
		return string(b), nil
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("no secret on standard input")
	}
	return line, nil
}

func newUserCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "Manage tenant users"}
	var tenant, username, role string
	var cost int
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a user; the password is read from standard input",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pw, err := readSecret(cmd.InOrStdin(), cmd.ErrOrStderr(), "Password: ")
			if err != nil {
				return err
			}
			return g.withService(cmd, false, cost, func(ctx context.Context, svc *accounts.Service) error {
				u, err := svc.CreateUser(ctx, cliActor(), accounts.CreateUserInput{TenantID: tenant, Username: username, Password: pw, Role: role})
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "created user %s in %s with role %s (id %s)\n", u.Username, u.TenantID, u.Role, u.ID)
				return nil
			})
		},
	}
	create.Flags().StringVar(&tenant, "tenant", "", "tenant id")
	create.Flags().StringVar(&username, "username", "", "login name, unique within the tenant")
	create.Flags().StringVar(&role, "role", "", "read-only, analyst, manager or admin")
	create.Flags().IntVar(&cost, "bcrypt-cost", 12, "bcrypt cost of the password hash")
	for _, f := range []string{"tenant", "username", "role"} {
		_ = create.MarkFlagRequired(f)
	}
	var listTenant string
	list := &cobra.Command{
		Use:   "list",
		Short: "List a tenant's users",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withService(cmd, false, 0, func(ctx context.Context, svc *accounts.Service) error {
				us, err := svc.Store.ListUsers(ctx, listTenant)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "USERNAME\tROLE\tDISABLED\tID")
				for _, u := range us {
					fmt.Fprintf(tw, "%s\t%s\t%v\t%s\n", u.Username, u.Role, u.Disabled, u.ID)
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().StringVar(&listTenant, "tenant", "", "tenant id")
	_ = list.MarkFlagRequired("tenant")
	cmd.AddCommand(create, list)
	addUserAdminCmds(g, cmd)
	return cmd
}

func newClientCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "client", Short: "Manage OAuth clients"}
	var (
		in          accounts.CreateClientInput
		grants      []string
		scopes      string
		audiences   []string
		secretStdin bool
	)
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a client; prints its generated secret once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if secretStdin {
				s, err := readSecret(cmd.InOrStdin(), cmd.ErrOrStderr(), "Client secret: ")
				if err != nil {
					return err
				}
				in.Secret = s
			}
			in.Grants = grants
			in.Scopes = strings.Fields(scopes)
			in.Audiences = audiences
			return g.withService(cmd, true, 0, func(ctx context.Context, svc *accounts.Service) error {
				c, secret, err := svc.CreateClient(ctx, cliActor(), in)
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				fmt.Fprintf(out, "client_id: %s\n", c.ID)
				if !secretStdin {
					fmt.Fprintf(out, "client_secret: %s\n", secret)
					fmt.Fprintln(cmd.ErrOrStderr(), "Store the secret now: it is not shown again.")
				}
				return nil
			})
		},
	}
	f := create.Flags()
	f.StringVar(&in.TenantID, "tenant", "", "tenant id")
	f.StringVar(&in.ID, "id", "", "client id")
	f.StringSliceVar(&grants, "grants", nil, "allowed grants: password,refresh_token,client_credentials")
	f.StringVar(&scopes, "scopes", "", "allowed scopes, space-separated")
	f.StringSliceVar(&audiences, "audience", []string{"simapi"}, "allowed audiences, comma-separated")
	f.StringVar(&in.Role, "role", "", "role carried by client-credentials tokens")
	f.BoolVar(&in.Introspect, "introspect", false, "a resource server allowed to call introspection")
	f.BoolVar(&secretStdin, "secret-stdin", false, "read the secret from standard input instead of generating one")
	_ = create.MarkFlagRequired("tenant")
	_ = create.MarkFlagRequired("id")
	var listTenant string
	list := &cobra.Command{
		Use:   "list",
		Short: "List a tenant's clients",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withService(cmd, false, 0, func(ctx context.Context, svc *accounts.Service) error {
				cs, err := svc.Store.ListClients(ctx, listTenant)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tGRANTS\tSCOPES\tAUDIENCES\tROLE\tINTROSPECT")
				for _, c := range cs {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\n", c.ID, c.GrantTypes, c.Scopes, c.Audiences, c.Role, c.Introspect)
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().StringVar(&listTenant, "tenant", "", "tenant id")
	_ = list.MarkFlagRequired("tenant")
	cmd.AddCommand(create, list)
	addClientAdminCmds(g, cmd)
	return cmd
}
