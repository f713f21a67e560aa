package transport

import (
	"fmt"
	"path"
)

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
			return fmt.Errorf("%w: %q has %q at byte %d; allowed are A-Z a-z 0-9 . _ : -", ErrInvalidTopic, topic, topic[i], i)
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
			return fmt.Errorf("%w: pattern %q has %q at byte %d", ErrInvalidTopic, pattern, c, i)
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
