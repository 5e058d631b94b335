package server

import (
	"net/http/httptest"
	"testing"
)

func TestClientIP(t *testing.T) {
	proxies, err := ParseTrustedProxies("10.0.0.0/8, 192.0.2.7")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, remote, xff string
		proxies           TrustedProxies
		want              string
	}{
		{"ok-no-proxies-ignores-header", "203.0.113.5:1234", "198.51.100.1", nil, "203.0.113.5"},
		{"ok-untrusted-peer-ignores-header", "203.0.113.5:1234", "198.51.100.1", proxies, "203.0.113.5"},
		{"ok-trusted-peer", "10.1.2.3:1234", "198.51.100.1", proxies, "198.51.100.1"},
		{"ok-skips-trusted-hops", "10.1.2.3:1234", "198.51.100.1, 192.0.2.7, 10.9.9.9", proxies, "198.51.100.1"},
		{"ok-spoofed-left-part-ignored", "10.1.2.3:1234", "6.6.6.6, 198.51.100.1", proxies, "198.51.100.1"},
		{"ok-all-trusted-falls-back", "10.1.2.3:1234", "10.0.0.1", proxies, "10.1.2.3"},
		{"fail-garbage-falls-back", "10.1.2.3:1234", "not-an-ip", proxies, "10.1.2.3"},
		{"ok-ipv6", "[2001:db8::1]:443", "", proxies, "2001:db8::1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.remote
			if tc.xff != "" {
				r.Header.Set("X-Forwarded-For", tc.xff)
			}
			if got := tc.proxies.clientIP(r); got != tc.want {
				t.Errorf("clientIP = %q, want %q", got, tc.want)
			}
		})
	}
	if _, err := ParseTrustedProxies("10.0.0.0/33"); err == nil {
		t.Error("bad CIDR accepted")
	}
}
