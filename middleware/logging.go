package middleware

import (
	"context"
	"log/slog"
	"time"

	"github.com/durabus/durabus/bus"
)

// Logging logs every handler call on l: an error line for a failure (after
// the retries inside it), an error line for an event sent to its
// dead-letter topic, a warn line for a problem that did not fail the call
// (a dedupe mark that could not be saved), and a debug line for a success
// or a dropped duplicate. Every line has topic, seq, id, type, attempt and
// duration. A nil l disables it (the handler is returned as it is).
func Logging(l *slog.Logger) bus.Middleware {
	return func(next bus.Handler) bus.Handler {
		if l == nil {
			return next
		}
		return bus.HandlerFunc(func(ctx context.Context, m *bus.Message) error {
			ctx, c := withCall(ctx)
			start := time.Now()
			err := next.Handle(ctx, m)
			attrs := []slog.Attr{
				slog.String("topic", m.Topic),
				slog.Uint64("seq", m.Position.Seq),
				slog.String("id", m.ID),
				slog.String("type", m.Type),
				slog.Int("attempt", c.attempts()),
				slog.Duration("duration", time.Since(start)),
			}
			if m.Replayed {
				attrs = append(attrs, slog.Bool("replayed", true))
			}
			for _, n := range c.takeNotes() {
				l.LogAttrs(ctx, slog.LevelWarn, "durabus: handler", append(attrs, slog.Any("err", n))...)
			}
			switch dead := c.deadTopic(); {
			case err != nil:
				l.LogAttrs(ctx, slog.LevelError, "durabus: handler failed", append(attrs, slog.Any("err", err))...)
			case dead != "":
				l.LogAttrs(ctx, slog.LevelError, "durabus: handler failed, event dead-lettered", append(attrs, slog.String("dead_topic", dead))...)
			case c.isDuplicate():
				l.LogAttrs(ctx, slog.LevelDebug, "durabus: duplicate dropped", attrs...)
			default:
				l.LogAttrs(ctx, slog.LevelDebug, "durabus: handled", attrs...)
			}
			return err
		})
	}
}
