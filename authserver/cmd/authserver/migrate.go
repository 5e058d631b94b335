package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/epitwin/epitwin/authserver/internal/storage"
)

func newMigrateCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Apply the versioned schema migrations",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			db, err := storage.Open(ctx, g.database, nil)
			if err != nil {
				return err
			}
			defer db.Close()
			n, err := db.Migrate(ctx)
			if err != nil {
				return err
			}
			v, err := db.Version(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "applied %d migration(s); schema version %d\n", n, v)
			return nil
		},
	}
}
