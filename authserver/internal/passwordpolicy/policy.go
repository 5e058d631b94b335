// Package passwordpolicy decides whether a new password is acceptable.
//
// The rules follow NIST SP 800-63B rather than composition rules (no "one
// digit, one symbol"): a minimum length, bcrypt's maximum length, and
// rejection of passwords that are easy to guess — common passwords, the
// username, a repeated character or pattern, or a simple sequence.
//
// Errors returned by [Validate] are safe to show to the user: they describe
// the rule and never echo the password.
package passwordpolicy

import (
	"bufio"
	_ "embed"
	"errors"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

const (
	// MinRunes is the minimum length in characters (Unicode code points).
	MinRunes = 12
	// MaxBytes is bcrypt's input limit. Longer passwords are refused rather
	// than silently truncated, which would make everything after byte 72
	// meaningless.
	MaxBytes = 72
)

// Errors returned by Validate. Their messages are meant for the user.
var (
	ErrTooShort         = errors.New("password must be at least 12 characters long")
	ErrTooLong          = errors.New("password must be at most 72 bytes long (non-ASCII characters take 2 to 4 bytes each)")
	ErrInvalidUTF8      = errors.New("password contains invalid characters")
	ErrContainsUsername = errors.New("password must not contain the username")
	ErrCommon           = errors.New("password is too common; choose a less predictable one")
	ErrTrivial          = errors.New("password must not be a repeated character, a repeated pattern or a simple sequence")
)

// minUsernameRunes is the shortest username checked as a substring: a
// two-letter username would forbid too many passwords. Shorter usernames
// are still refused as the whole password.
const minUsernameRunes = 3

// maxAffixRunes bounds the digits and symbols that, added around a common
// password ("Password2024!", "qwerty123456"), still make it common.
const maxAffixRunes = 6

// Validate returns nil if password is acceptable for username, or one of
// the Err* errors:
//   - at least MinRunes characters (code points, so "é" counts once);
//   - at most MaxBytes bytes of valid UTF-8;
//   - not equal to the username nor, for usernames of 3+ characters (or
//     the local part of an e-mail address), containing it, ignoring case;
//   - not a common password from the embedded list, ignoring case, even
//     with up to 6 digits or symbols added before or after it;
//   - not a single repeated character, a short pattern repeated
//     ("abcabcabcabc"), or a run along the alphabet, the digits or a
//     keyboard row, forwards or backwards ("abcdefghijkl", "123456789012",
//     "qwertyuiopas").
func Validate(password string, username string) error {
	if !utf8.ValidString(password) {
		return ErrInvalidUTF8
	}
	if utf8.RuneCountInString(password) < MinRunes {
		return ErrTooShort
	}
	if len(password) > MaxBytes {
		return ErrTooLong
	}
	lower := strings.ToLower(password)
	if containsUsername(lower, username) {
		return ErrContainsUsername
	}
	if isTrivial(lower) {
		return ErrTrivial
	}
	if isCommon(lower) {
		return ErrCommon
	}
	return nil
}

func containsUsername(lowerPassword, username string) bool {
	u := strings.ToLower(strings.TrimSpace(username))
	if u == "" {
		return false
	}
	if lowerPassword == u {
		return true
	}
	candidates := []string{u}
	if local, _, ok := strings.Cut(u, "@"); ok {
		candidates = append(candidates, local)
	}
	for _, c := range candidates {
		if utf8.RuneCountInString(c) >= minUsernameRunes && strings.Contains(lowerPassword, c) {
			return true
		}
	}
	return false
}

//go:embed common-passwords.txt
var commonFile string

// common is the embedded list, lower-cased, parsed on first use.
var common = sync.OnceValue(func() map[string]struct{} {
	m := make(map[string]struct{}, 8192)
	sc := bufio.NewScanner(strings.NewReader(commonFile))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m[strings.ToLower(line)] = struct{}{}
	}
	return m
})

// isCommon reports whether lower is a common password, possibly with a few
// digits or symbols before or after it.
func isCommon(lower string) bool {
	m := common()
	if _, ok := m[lower]; ok {
		return true
	}
	notLetter := func(r rune) bool { return !unicode.IsLetter(r) }
	core := strings.TrimFunc(lower, notLetter)
	if core == "" || core == lower {
		return false
	}
	if utf8.RuneCountInString(lower)-utf8.RuneCountInString(core) > maxAffixRunes {
		return false
	}
	_, ok := m[core]
	return ok
}

// sequences are the alphabets along which a run is trivial. Each is
// matched forwards, backwards and wrapping around ("7890123...").
var sequences = []string{
	"abcdefghijklmnopqrstuvwxyz",
	"0123456789",
	"qwertyuiop",
	"asdfghjkl",
	"zxcvbnm",
	"qwertyuiopasdfghjklzxcvbnm",
	"1234567890qwertyuiopasdfghjklzxcvbnm",
	"1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
	"qazwsxedcrfvtgbyhnujmikolp",
	"azertyuiop",
	"qwertzuiop",
}

// isTrivial reports a repeated unit of up to 4 characters (which includes
// a single repeated character) or a run along one of the sequences.
func isTrivial(lower string) bool {
	runes := []rune(lower)
	for unit := 1; unit <= 4 && unit < len(runes); unit++ {
		if isRepetition(runes, unit) {
			return true
		}
	}
	for _, seq := range sequences {
		if onCycle(lower, seq) || onCycle(lower, reverse(seq)) {
			return true
		}
	}
	return false
}

// isRepetition reports whether runes is runes[:unit] repeated (the last
// repetition may be partial).
func isRepetition(runes []rune, unit int) bool {
	for i := unit; i < len(runes); i++ {
		if runes[i] != runes[i-unit] {
			return false
		}
	}
	return true
}

// onCycle reports whether s is a substring of seq repeated cyclically.
func onCycle(s, seq string) bool {
	if len(s) == 0 || len(seq) == 0 {
		return false
	}
	// Enough repetitions to contain any substring of length len(s) at any
	// starting offset.
	n := len(s)/len(seq) + 2
	return strings.Contains(strings.Repeat(seq, n), s)
}

func reverse(s string) string {
	r := []rune(s)
	for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
		r[i], r[j] = r[j], r[i]
	}
	return string(r)
}
