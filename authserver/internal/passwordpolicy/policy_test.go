package passwordpolicy

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidate(t *testing.T) {
	const hiragana24 = "あいうえおかきくけこさしすせそたちつてとなにぬね" // 24 runes × 3 bytes = 72 bytes
	const emoji18 = "😀😁😂😃😄😅😆😇😈😉😊😋😌😍😎😏😐😑"          // 18 runes × 4 bytes = 72 bytes
	if len(hiragana24) != 72 || len(emoji18) != 72 {
		t.Fatalf("fixture sizes: %d, %d", len(hiragana24), len(emoji18))
	}
	tests := []struct {
		name     string
		password string
		username string
		want     error
	}{
		{"ok", "correct horse battery staple", "alice", nil},
		{"ok-mixed", "Tr0ub4dor&3-xyz", "alice", nil},
		{"ok-exactly-12-runes", "gR7!kq2#vLp9", "alice", nil},
		{"ok-12-multibyte-runes", "çàéèüöäßñøåæ", "alice", nil},
		{"ok-72-bytes-3-byte-runes", hiragana24, "alice", nil},
		{"ok-72-bytes-4-byte-runes", emoji18, "alice", nil},
		{"ok-72-ascii-bytes", strings.Repeat("Xk9#mQ2!", 9), "alice", nil},
		{"ok-71-bytes", hiragana24[:69] + "xy", "alice", nil},
		{"ok-72-bytes-mixed-widths", emoji18[:68] + "ab" + "é", "alice", nil}, // 68+2+2 bytes
		{"ok-common-word-with-long-suffix", "monkey!8273645192", "alice", nil},
		{"ok-short-username-substring", "totally-alright-pass", "al", nil},
		{"ok-no-username", "correct horse battery staple", "", nil},

		{"fail-short", "Tr0ub4dor&3", "alice", ErrTooShort},
		{"fail-short-empty", "", "alice", ErrTooShort},
		{"fail-short-multibyte", "çàéèüöäßñøå", "alice", ErrTooShort}, // 11 runes, 22 bytes
		{"fail-long-bytes-3-byte-rune", hiragana24 + "x", "alice", ErrTooLong},
		{"fail-long-bytes-replace-last", hiragana24[:69] + "xyzw", "alice", ErrTooLong},            // 73 bytes
		{"fail-long-bytes-4-byte-rune", emoji18[:68] + "abc" + "é", "alice", ErrTooLong},           // 68+3+2 = 73 bytes
		{"fail-long-bytes-rune-across-boundary", hiragana24[:69] + "x" + "ん", "alice", ErrTooLong}, // 69+1+3 = 73: byte 72 is inside the last rune
		{"fail-long-bytes-emoji-over", emoji18 + "a", "alice", ErrTooLong},
		{"fail-long-bytes-ascii", strings.Repeat("Xk9#mQ2!", 9) + "z", "alice", ErrTooLong},
		{"fail-long-bytes-few-runes", strings.Repeat("😀😁😂", 7), "alice", ErrTooLong}, // 21 runes, 84 bytes
		{"fail-invalid-utf8", "abcdefghijk\xff\xfe", "alice", ErrInvalidUTF8},

		{"fail-common", "password1234", "alice", ErrCommon},
		{"fail-common-case", "PassWord1234", "alice", ErrCommon},
		{"fail-common-keyboard", "qwertyuiop123", "alice", ErrCommon},
		{"fail-common-phrase", "iloveyou1234", "alice", ErrCommon},
		{"fail-common-affix", "Welcome2024!!", "alice", ErrCommon},
		{"fail-common-leet", "P@ssw0rd1234", "alice", ErrCommon},
		{"fail-common-prefix", "123456Football", "alice", ErrCommon},

		{"fail-contains-username", "MyNameIsAlice2024", "alice", ErrContainsUsername},
		{"fail-contains-username-case", "xxALICExxyyzz", "Alice", ErrContainsUsername},
		{"fail-equals-username", "averylongusername", "AVeryLongUsername", ErrContainsUsername},
		{"fail-contains-email-local-part", "bob-is-my-favourite-uncle", "bob@example.com", ErrContainsUsername},
		{"fail-contains-email", "mail:bob@example.com!", "bob@example.com", ErrContainsUsername},

		{"fail-repeated", "aaaaaaaaaaaa", "alice", ErrTrivial},
		{"fail-repeated-multibyte", "éééééééééééé", "alice", ErrTrivial},
		{"fail-repeated-case", "AaAaAaAaAaAa", "alice", ErrTrivial},
		{"fail-repeated-pattern", "abcabcabcabc", "alice", ErrTrivial},
		{"fail-repeated-pair", "121212121212", "alice", ErrTrivial},
		{"fail-sequence-digits", "123456789012", "alice", ErrTrivial},
		{"fail-sequence-digits-down", "987654321098", "alice", ErrTrivial},
		{"fail-sequence-letters", "abcdefghijkl", "alice", ErrTrivial},
		{"fail-sequence-letters-down", "ZYXWVUTSRQPO", "alice", ErrTrivial},
		{"fail-sequence-keyboard", "qwertyuiopas", "alice", ErrTrivial},
		{"fail-sequence-keyboard-columns", "1qaz2wsx3edc", "alice", ErrTrivial},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want == nil && len(tc.password) > MaxBytes || tc.want == ErrTooLong && len(tc.password) <= MaxBytes {
				t.Fatalf("bad fixture: %d bytes", len(tc.password))
			}
			err := Validate(tc.password, tc.username)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Validate(%q, %q) = %v, want %v", tc.password, tc.username, err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), tc.password) && tc.password != "" {
				t.Fatalf("error message echoes the password: %v", err)
			}
		})
	}
}

func TestCommonList(t *testing.T) {
	m := common()
	if len(m) < 3000 {
		t.Fatalf("common list has %d entries, want a few thousand", len(m))
	}
	for _, p := range []string{"123456", "password", "qwerty", "iloveyou", "welcome", "admin", "letmein",
		"password1234", "qwertyuiop123", "123456789012", "trustno1", "p@ssw0rd"} {
		if _, ok := m[p]; !ok {
			t.Errorf("%q missing from the common list", p)
		}
	}
	// Every listed password is refused, whatever the reason.
	for p := range m {
		if err := Validate(p, ""); err == nil {
			t.Errorf("listed password %q accepted", p)
		}
		if err := Validate(strings.ToUpper(p), ""); err == nil {
			t.Errorf("listed password %q accepted in upper case", strings.ToUpper(p))
		}
	}
}

func FuzzValidate(f *testing.F) {
	for _, s := range []string{"", "correct horse battery staple", "password1234", "aaaaaaaaaaaa",
		"あいうえおかきくけこさしすせそたちつてとなにぬね", "😀😁😂😃😄😅😆😇😈😉😊😋😌😍😎😏😐😑",
		"\xff\xfe\xfd", "MyNameIsAlice2024"} {
		f.Add(s, "alice")
	}
	f.Add("bob-is-my-favourite-uncle", "bob@example.com")
	f.Fuzz(func(t *testing.T, password, username string) {
		err := Validate(password, username)
		if err != nil {
			return
		}
		if len(password) > MaxBytes {
			t.Fatalf("accepted %d bytes", len(password))
		}
		if n := utf8.RuneCountInString(password); n < MinRunes {
			t.Fatalf("accepted %d runes", n)
		}
		if !utf8.ValidString(password) {
			t.Fatalf("accepted invalid UTF-8")
		}
		u := strings.ToLower(strings.TrimSpace(username))
		if utf8.RuneCountInString(u) >= minUsernameRunes && strings.Contains(strings.ToLower(password), u) {
			t.Fatalf("accepted a password containing the username")
		}
	})
}
