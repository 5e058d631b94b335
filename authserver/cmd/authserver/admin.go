package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/epitwin/epitwin/authserver/internal/accounts"
	"github.com/epitwin/epitwin/authserver/internal/passwordpolicy"
	"github.com/epitwin/epitwin/authserver/internal/storage"
	"github.com/epitwin/epitwin/pkg/rbac"
)

// The operator's CLI acts as a platform operator: the same rules as the
// admin API (last-admin protection, revocation on every account change,
// audit events) apply, so an operator without a token can recover.

// operator returns the actor the CLI acts as.
func operator() accounts.Actor {
	return accounts.Actor{Subject: cliActor(), Username: cliActor(), TenantID: accounts.PlatformTenant,
		Role: rbac.Admin, Scopes: rbac.Scopes()}
}

// withService runs fn with an accounts service over the migrated database.
func (g *globals) withService(cmd *cobra.Command, secrets bool, cost int, fn func(ctx context.Context, svc *accounts.Service) error) error {
	svc, done, err := g.service(cmd.Context(), secrets, cost)
	if err != nil {
		return err
	}
	defer done()
	return fn(cmd.Context(), svc)
}

func addUserAdminCmds(g *globals, user *cobra.Command) {
	var tenant, username, role string
	var cost int
	target := func(c *cobra.Command) {
		c.Flags().StringVar(&tenant, "tenant", "", "tenant id")
		c.Flags().StringVar(&username, "username", "", "user name")
		_ = c.MarkFlagRequired("tenant")
		_ = c.MarkFlagRequired("username")
	}
	setDisabled := func(disabled bool) func(cmd *cobra.Command, _ []string) error {
		return func(cmd *cobra.Command, _ []string) error {
			return g.withService(cmd, false, 0, func(ctx context.Context, svc *accounts.Service) error {
				u, err := svc.UpdateUser(ctx, operator(), tenant, username, accounts.UpdateUserInput{Disabled: &disabled})
				if err != nil {
					return err
				}
				state := "enabled"
				if u.Disabled {
					state = "disabled; every session and access token of the user is revoked"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "user %s in %s %s\n", u.Username, u.TenantID, state)
				return nil
			})
		}
	}
	disable := &cobra.Command{Use: "disable", Short: "Disable a user and revoke all of their tokens", Args: cobra.NoArgs, RunE: setDisabled(true)}
	enable := &cobra.Command{Use: "enable", Short: "Enable a disabled user", Args: cobra.NoArgs, RunE: setDisabled(false)}
	setRole := &cobra.Command{
		Use: "set-role", Short: "Change a user's role (revokes their tokens; the new role applies to the next login)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withService(cmd, false, 0, func(ctx context.Context, svc *accounts.Service) error {
				u, err := svc.UpdateUser(ctx, operator(), tenant, username, accounts.UpdateUserInput{Role: &role})
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "user %s in %s now has role %s\n", u.Username, u.TenantID, u.Role)
				return nil
			})
		},
	}
	setRole.Flags().StringVar(&role, "role", "", "read-only, analyst, manager or admin")
	_ = setRole.MarkFlagRequired("role")
	reset := &cobra.Command{
		Use: "reset-password", Short: "Set a new password (read from standard input) and revoke the user's tokens", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pw, err := readSecret(cmd.InOrStdin(), cmd.ErrOrStderr(), "New password: ")
			if err != nil {
				return err
			}
			return g.withService(cmd, false, cost, func(ctx context.Context, svc *accounts.Service) error {
				if err := svc.ResetPassword(ctx, operator(), tenant, username, pw); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "password of %s in %s reset; their sessions are revoked\n", username, tenant)
				return nil
			})
		},
	}
	reset.Flags().IntVar(&cost, "bcrypt-cost", 12, "bcrypt cost of the new hash")
	del := &cobra.Command{
		Use: "delete", Short: "Delete a user and revoke all of their tokens", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withService(cmd, false, 0, func(ctx context.Context, svc *accounts.Service) error {
				if err := svc.DeleteUser(ctx, operator(), tenant, username); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "user %s deleted from %s\n", username, tenant)
				return nil
			})
		},
	}
	for _, c := range []*cobra.Command{disable, enable, setRole, reset, del} {
		target(c)
		user.AddCommand(c)
	}
}

func newSessionCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "session", Short: "List and revoke users' refresh-token sessions"}
	var tenant, username, id string
	var all bool
	list := &cobra.Command{
		Use: "list", Short: "List a user's active sessions (refresh-token families)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withService(cmd, false, 0, func(ctx context.Context, svc *accounts.Service) error {
				fams, err := svc.ListSessions(ctx, operator(), tenant, username)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tCLIENT\tCREATED\tLAST USED\tEXPIRES")
				for _, f := range fams {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.ID, f.ClientID, f.CreatedAt.Format(time.RFC3339),
						f.LastUsedAt.Format(time.RFC3339), f.ExpiresAt.Format(time.RFC3339))
				}
				return tw.Flush()
			})
		},
	}
	revoke := &cobra.Command{
		Use: "revoke", Short: "Revoke one session (--id) or every session of the user (--all)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (id == "") == !all {
				return errors.New("give exactly one of --id or --all")
			}
			return g.withService(cmd, false, 0, func(ctx context.Context, svc *accounts.Service) error {
				if all {
					n, err := svc.RevokeAllSessions(ctx, operator(), tenant, username)
					if err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "revoked %d session(s) of %s and all of their access tokens\n", n, username)
					return nil
				}
				if err := svc.RevokeSession(ctx, operator(), tenant, username, id); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "revoked session %s of %s\n", id, username)
				return nil
			})
		},
	}
	revoke.Flags().StringVar(&id, "id", "", "session id (from session list)")
	revoke.Flags().BoolVar(&all, "all", false, "sign the user out everywhere")
	for _, c := range []*cobra.Command{list, revoke} {
		c.Flags().StringVar(&tenant, "tenant", "", "tenant id")
		c.Flags().StringVar(&username, "username", "", "user name")
		_ = c.MarkFlagRequired("tenant")
		_ = c.MarkFlagRequired("username")
		cmd.AddCommand(c)
	}
	return cmd
}

func addClientAdminCmds(g *globals, client *cobra.Command) {
	var tenant, id string
	var overlap time.Duration
	rotate := &cobra.Command{
		Use: "rotate-secret", Short: "Issue a new client secret; the old one keeps working for --overlap", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withService(cmd, true, 0, func(ctx context.Context, svc *accounts.Service) error {
				c, secret, err := svc.RotateClientSecret(ctx, operator(), tenant, id, overlap)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "client_id: %s\nclient_secret: %s\n", c.ID, secret)
				fmt.Fprintf(cmd.ErrOrStderr(), "Store the secret now: it is not shown again. The previous secret works until %s.\n",
					time.Now().Add(overlap).UTC().Format(time.RFC3339))
				return nil
			})
		},
	}
	rotate.Flags().DurationVar(&overlap, "overlap", 24*time.Hour, "how long the previous secret keeps working")
	del := &cobra.Command{
		Use: "delete", Short: "Delete a client and revoke every token issued to it", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withService(cmd, false, 0, func(ctx context.Context, svc *accounts.Service) error {
				if err := svc.DeleteClient(ctx, operator(), tenant, id); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "client %s deleted from %s\n", id, tenant)
				return nil
			})
		},
	}
	for _, c := range []*cobra.Command{rotate, del} {
		c.Flags().StringVar(&tenant, "tenant", "", "tenant id")
		c.Flags().StringVar(&id, "id", "", "client id")
		_ = c.MarkFlagRequired("tenant")
		_ = c.MarkFlagRequired("id")
		client.AddCommand(c)
	}
}

func newAuditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Read the append-only audit log"}
	var (
		f            storage.AuditFilter
		since, until string
		limit        int
		asJSON       bool
	)
	list := &cobra.Command{
		Use: "list", Short: "List audit events, oldest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if since != "" {
				if f.Since, err = time.Parse(time.RFC3339, since); err != nil {
					return fmt.Errorf("--since: %w", err)
				}
			}
			if until != "" {
				if f.Until, err = time.Parse(time.RFC3339, until); err != nil {
					return fmt.Errorf("--until: %w", err)
				}
			}
			f.Limit = limit
			return g.withService(cmd, false, 0, func(ctx context.Context, svc *accounts.Service) error {
				events, err := svc.Store.ListAudit(ctx, f)
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if asJSON {
					enc := json.NewEncoder(out)
					for _, e := range events {
						if err := enc.Encode(e); err != nil {
							return err
						}
					}
					return nil
				}
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tTIME\tTYPE\tTENANT\tACTOR\tSUBJECT\tCLIENT\tIP\tOUTCOME\tDETAILS")
				for _, e := range events {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Time.Format(time.RFC3339), e.Type,
						e.TenantID, e.Actor, e.Subject, e.ClientID, e.IP, e.Outcome, strings.ReplaceAll(e.Details, "\t", " "))
				}
				return tw.Flush()
			})
		},
	}
	fl := list.Flags()
	fl.StringVar(&f.TenantID, "tenant", "", "only this tenant")
	fl.StringVar(&f.Actor, "actor", "", "only this actor")
	fl.StringVar(&f.Subject, "subject", "", "only this subject")
	fl.StringVar(&f.Type, "type", "", "only this event type, e.g. login.failed")
	fl.StringVar(&since, "since", "", "from this time (RFC 3339)")
	fl.StringVar(&until, "until", "", "before this time (RFC 3339)")
	fl.Int64Var(&f.AfterID, "after-id", 0, "only events after this id (paging)")
	fl.IntVar(&limit, "limit", 100, "at most this many events (max 1000)")
	fl.BoolVar(&asJSON, "json", false, "one JSON object per line")
	cmd.AddCommand(list)
	return cmd
}

// newBootstrapCmd creates the platform tenant, its first operator and the
// console client operators log in with. It is idempotent: what exists is
// left alone (and an existing client's secret is never shown again).
func newBootstrapCmd(g *globals) *cobra.Command {
	var username string
	var cost int
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Create the platform tenant, an operator (password on stdin) and the operator console client; idempotent",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pw, err := readSecret(cmd.InOrStdin(), cmd.ErrOrStderr(), "Operator password: ")
			if err != nil {
				return err
			}
			// Check the password before creating anything, so a refused
			// password leaves no half-bootstrapped platform behind.
			if err := passwordpolicy.Validate(pw, username); err != nil {
				return err
			}
			return g.withService(cmd, true, cost, func(ctx context.Context, svc *accounts.Service) error {
				out := cmd.OutOrStdout()
				actor := cliActor()
				if _, err := svc.CreateTenant(ctx, actor, accounts.PlatformTenant, "EpiTwin platform operators"); err != nil && !isKind(err, accounts.Conflict) {
					return err
				} else if err == nil {
					fmt.Fprintf(out, "created tenant %s\n", accounts.PlatformTenant)
				}
				if _, err := svc.CreateUser(ctx, actor, accounts.CreateUserInput{TenantID: accounts.PlatformTenant, Username: username, Password: pw, Role: string(rbac.Admin)}); err != nil && !isKind(err, accounts.Conflict) {
					return err
				} else if err == nil {
					fmt.Fprintf(out, "created operator %s\n", username)
				} else {
					fmt.Fprintf(out, "operator %s already exists (password unchanged)\n", username)
				}
				c, secret, err := svc.CreateClient(ctx, actor, accounts.CreateClientInput{
					TenantID: accounts.PlatformTenant, ID: consoleClientID,
					Grants: []string{"password", "refresh_token"}, Scopes: rbac.Scopes(),
					Audiences: []string{"authserver"},
				})
				switch {
				case isKind(err, accounts.Conflict):
					fmt.Fprintf(out, "client %s already exists (use 'client rotate-secret' for a new secret)\n", consoleClientID)
				case err != nil:
					return err
				default:
					fmt.Fprintf(out, "client_id: %s\nclient_secret: %s\n", c.ID, secret)
					fmt.Fprintln(cmd.ErrOrStderr(), "Store the secret now: it is not shown again.")
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&username, "operator-username", "", "the operator's user name")
	cmd.Flags().IntVar(&cost, "bcrypt-cost", 12, "bcrypt cost of the password hash")
	_ = cmd.MarkFlagRequired("operator-username")
	return cmd
}

// consoleClientID is the client operators and tenant admins can use to get
// admin-API tokens (audience authserver).
const consoleClientID = "platform-console"

func isKind(err error, k accounts.Kind) bool {
	var e *accounts.Error
	return errors.As(err, &e) && e.Kind == k
}
