package throttle_test

import (
	"github.com/epitwin/epitwin/authserver/internal/oauth"
	"github.com/epitwin/epitwin/authserver/internal/throttle"
)

var _ oauth.LoginThrottle = (*throttle.Limiter)(nil)
