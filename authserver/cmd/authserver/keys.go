package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/epitwin/epitwin/authserver/internal/keys"
	"github.com/epitwin/epitwin/authserver/internal/storage"
)

// keyOptions are the key-ring settings shared by serve and the keys commands.
type keyOptions struct {
	alg            string
	accessTTL      time.Duration
	rotationPeriod time.Duration
	jwksMaxAge     time.Duration
}

// newKeyManager builds the key ring over db, auditing into store as actor.
func newKeyManager(db *storage.DB, store *storage.Store, o keyOptions, actor string) (*keys.Manager, error) {
	kek, err := loadKEK(db)
	if err != nil {
		return nil, err
	}
	return keys.NewManager(db.Gorm, keys.Config{
		KEK:            kek,
		Alg:            o.alg,
		MaxTokenTTL:    o.accessTTL,
		RotationPeriod: o.rotationPeriod,
		JWKSMaxAge:     o.jwksMaxAge,
		Audit:          store.KeyAuditor(actor),
	})
}

func newKeysCmd(g *globals) *cobra.Command {
	var o keyOptions
	cmd := &cobra.Command{Use: "keys", Short: "Manage the access-token signing keys"}
	cmd.PersistentFlags().StringVar(&o.alg, "signing-alg", "ES256", "algorithm of new keys: ES256, RS256 or EdDSA")
	cmd.PersistentFlags().DurationVar(&o.accessTTL, "access-token-ttl", time.Hour, "access-token lifetime (how long a retired key stays published)")
	withManager := func(cmd *cobra.Command, fn func(ctx context.Context, m *keys.Manager) error) error {
		ctx := cmd.Context()
		db, err := g.openDB(ctx)
		if err != nil {
			return err
		}
		defer db.Close()
		m, err := newKeyManager(db, storage.New(db, nil), o, cliActor())
		if err != nil {
			return err
		}
		return fn(ctx, m)
	}
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Make a new key active now; the old one stays published until its tokens expire",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withManager(cmd, func(ctx context.Context, m *keys.Manager) error {
				k, err := m.Rotate(ctx)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "new active key %s (%s); running servers pick it up within %s\n", k.KID, k.Alg, keys.DefaultReloadInterval)
				return nil
			})
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the signing keys and their states",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withManager(cmd, func(ctx context.Context, m *keys.Manager) error {
				ks, err := m.List(ctx)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "KID\tALG\tSTATE\tCREATED\tACTIVATES\tPUBLISHED UNTIL")
				for _, k := range ks {
					until := "-"
					if k.PublishedUntil != nil {
						until = k.PublishedUntil.Format(time.RFC3339)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.KID, k.Alg, k.State,
						k.CreatedAt.Format(time.RFC3339), k.ActivatesAt.Format(time.RFC3339), until)
				}
				return tw.Flush()
			})
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke KID",
		Short: "Remove a key from JWKS at once; every token it signed becomes inactive",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withManager(cmd, func(ctx context.Context, m *keys.Manager) error {
				if err := m.Revoke(ctx, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "revoked key %s; running servers drop it within %s\n", args[0], keys.DefaultReloadInterval)
				return nil
			})
		},
	}
	cmd.AddCommand(rotate, list, revoke)
	return cmd
}
