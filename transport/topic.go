package transport

import (
	"fmt"
	"path"
	"unicode/utf8"
)

// charAt quotes the character that starts at byte i of s: the whole
// character, not its first byte, so that "café" shows 'é'; a byte that
// is not UTF-8 shows as its hex value.
func charAt(s string, i int) string {
	r, size := utf8.DecodeRuneInString(s[i:])
	if r == utf8.RuneError && size <= 1 {
		return fmt.Sprintf("byte %#02x", s[i])
	}
	return fmt.Sprintf("%q", r)
}

// MaxTopicLen is the longest topic name allowed, in bytes.
const MaxTopicLen = 200

// ValidateTopic checks a topic name: 1 to MaxTopicLen bytes of
// A–Z a–z 0–9 . _ : - (no spaces, braces or glob characters). The error
// wraps ErrInvalidTopic and says what is wrong.
func ValidateTopic(topic string) error {
	if topic == "" {
		return fmt.Errorf("%w: empty name", ErrInvalidTopic)
	}
	if len(topic) > MaxTopicLen {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrInvalidTopic, len(topic), MaxTopicLen)
	}
	for i := 0; i < len(topic); i++ {
		if !topicByte(topic[i]) {
			return fmt.Errorf("%w: %q has %s at byte %d; allowed are A-Z a-z 0-9 . _ : -", ErrInvalidTopic, topic, charAt(topic, i), i)
		}
	}
	return nil
}

// ValidatePattern checks a glob pattern over topic names: the topic
// characters plus `*`, `?`, and classes `[...]` (with `^` for negation, and ranges).
func ValidatePattern(pattern string) error {
	if pattern == "" {
		return fmt.Errorf("%w: empty pattern", ErrInvalidTopic)
	}
	if len(pattern) > MaxTopicLen {
		return fmt.Errorf("%w: pattern of %d bytes, the limit is %d", ErrInvalidTopic, len(pattern), MaxTopicLen)
	}
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		if !topicByte(c) && c != '*' && c != '?' && c != '[' && c != ']' && c != '^' {
			return fmt.Errorf("%w: pattern %q has %s at byte %d", ErrInvalidTopic, pattern, charAt(pattern, i), i)
		}
	}
	if _, err := path.Match(pattern, ""); err != nil {
		return fmt.Errorf("%w: pattern %q: %v", ErrInvalidTopic, pattern, err)
	}
	return nil
}

// IsPattern reports whether s holds glob characters.
func IsPattern(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[':
			return true
		}
	}
	return false
}

// Match reports whether topic matches the glob pattern, with the same
// meaning as Redis's PSUBSCRIBE for the characters ValidatePattern allows.
// An invalid pattern matches nothing.
func Match(pattern, topic string) bool {
	ok, err := path.Match(pattern, topic)
	return err == nil && ok
}

func topicByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == ':' || c == '-'
}
