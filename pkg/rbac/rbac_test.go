package rbac

import (
	"reflect"
	"testing"
)

func TestMatrix(t *testing.T) {
	// The table in the README, cell by cell.
	want := map[Role][]Permission{
		ReadOnly: {ViewForecasts},
		Analyst:  {ViewForecasts, RunSimulations, ExportData},
		Manager:  {ViewForecasts, RunSimulations, ExportData, UploadObservations},
		Admin:    {ViewForecasts, RunSimulations, ExportData, UploadObservations, ManageUsers, ReadBilling},
	}
	for _, r := range Roles {
		for _, p := range Permissions {
			allowed := false
			for _, q := range want[r] {
				allowed = allowed || q == p
			}
			if got := Allow(r, p); got != allowed {
				t.Errorf("Allow(%s, %s) = %v, want %v", r, p, got, allowed)
			}
		}
	}
	if Allow("root", ViewForecasts) {
		t.Error("unknown role allowed")
	}
}

func TestEffectiveNarrowsByScope(t *testing.T) {
	tests := []struct {
		name   string
		role   Role
		scopes []string
		want   []Permission
	}{
		{"admin-all", Admin, Scopes(), Permissions},
		{"admin-read-only-scope", Admin, []string{"forecasts:read"}, []Permission{ViewForecasts}},
		{"reader-cannot-widen", ReadOnly, Scopes(), []Permission{ViewForecasts}},
		{"no-scopes", Manager, nil, nil},
		{"unknown-role", "ghost", Scopes(), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Effective(tt.role, tt.scopes); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			for _, p := range Permissions {
				inWant := false
				for _, q := range tt.want {
					inWant = inWant || p == q
				}
				if Has(tt.role, tt.scopes, p) != inWant {
					t.Errorf("Has(%s) disagrees with Effective", p)
				}
			}
		})
	}
}

func TestParse(t *testing.T) {
	if _, err := ParseRole("superuser"); err == nil {
		t.Error("ParseRole accepted unknown role")
	}
	if r, err := ParseRole("manager"); err != nil || r != Manager {
		t.Errorf("ParseRole(manager) = %v, %v", r, err)
	}
	if !Admin.AtLeast(Manager) || Analyst.AtLeast(Manager) || Role("x").AtLeast(ReadOnly) {
		t.Error("AtLeast ordering wrong")
	}
	if _, err := ParseScopes("forecasts:read openid"); err == nil {
		t.Error("ParseScopes accepted unknown scope")
	}
	got, err := ParseScopes(" data:export  forecasts:read data:export ")
	if err != nil || !reflect.DeepEqual(got, []string{"data:export", "forecasts:read"}) {
		t.Errorf("ParseScopes = %v, %v", got, err)
	}
	if s := SortScopes([]string{"billing:read", "zzz", "forecasts:read"}); !reflect.DeepEqual(s, []string{"forecasts:read", "billing:read", "zzz"}) {
		t.Errorf("SortScopes = %v", s)
	}
}
