package accounts

import "github.com/epitwin/epitwin/authserver/internal/passwordpolicy"

// validatePassword applies the password policy to a new password (account
// creation and reset alike). The policy's messages are safe to show.
func validatePassword(password, username string) error {
	if err := passwordpolicy.Validate(password, username); err != nil {
		return &Error{Kind: Invalid, Msg: err.Error(), Err: err}
	}
	return nil
}

// hashPassword validates a new password and returns its bcrypt hash.
func (s *Service) hashPassword(password, username string) (string, error) {
	if err := validatePassword(password, username); err != nil {
		return "", err
	}
	hash, err := s.Passwords.Hash(password)
	if err != nil {
		return "", invalid("password: %v", err)
	}
	return hash, nil
}
