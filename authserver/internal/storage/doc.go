// Package storage persists everything authserver knows — tenants, users,
// OAuth clients, token sessions, the audit log — with gorm on either the
// embedded SQLite file or PostgreSQL, and implements the fosite storage
// interfaces on top of it. Token signatures are stored only as SHA-256 hashes.
package storage
