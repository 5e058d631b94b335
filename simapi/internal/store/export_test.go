package store

import (
	"context"

	"gorm.io/gorm"
)

// TenantTx exposes tenantTx to the external tests (RLS checks run raw SQL
// inside a tenant transaction).
func (s *Store) TenantTx(ctx context.Context, tenant string, fn func(tx *gorm.DB) error) error {
	return s.tenantTx(ctx, tenant, fn)
}
