package tiercache

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// logLine is one captured log record, its attributes as text.
type logLine struct {
	at    time.Time
	level slog.Level
	msg   string
	attrs map[string]string
}

func (l logLine) String() string {
	return fmt.Sprintf("%s %q %v", l.level, l.msg, l.attrs)
}

// logCapture is a slog.Handler that keeps every record, DEBUG included.
type logCapture struct {
	mu    sync.Mutex
	lines []logLine
}

func (h *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (h *logCapture) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logCapture) WithGroup(string) slog.Handler            { return h }

func (h *logCapture) Handle(_ context.Context, r slog.Record) error {
	l := logLine{at: r.Time, level: r.Level, msg: r.Message, attrs: map[string]string{}}
	r.Attrs(func(a slog.Attr) bool {
		l.attrs[a.Key] = a.Value.Resolve().String()
		return true
	})
	h.mu.Lock()
	h.lines = append(h.lines, l)
	h.mu.Unlock()
	return nil
}

// matching returns the captured lines whose message contains substr.
func (h *logCapture) matching(substr string) []logLine {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []logLine
	for _, l := range h.lines {
		if strings.Contains(l.msg, substr) {
			out = append(out, l)
		}
	}
	return out
}

// all returns every line as text, for failure messages.
func (h *logCapture) all() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	for _, l := range h.lines {
		b.WriteString("\n\t" + l.String())
	}
	return b.String()
}

// contains reports whether any line's message or attribute holds s.
func (h *logCapture) contains(s string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, l := range h.lines {
		if strings.Contains(l.msg, s) {
			return true
		}
		for _, v := range l.attrs {
			if strings.Contains(v, s) {
				return true
			}
		}
	}
	return false
}

// waitLine polls until a line whose message contains substr was logged.
func (h *logCapture) waitLine(t *testing.T, d time.Duration, substr string) logLine {
	t.Helper()
	var got logLine
	eventually(t, d, fmt.Sprintf("a log line %q", substr), func() error {
		if ls := h.matching(substr); len(ls) > 0 {
			got = ls[0]
			return nil
		}
		return fmt.Errorf("not logged; the log:%s", h.all())
	})
	return got
}
