package warm

import (
	"strings"
	"testing"
)

func TestEnabledFromEnv(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  bool
		err   string
	}{
		{"", true, ""},
		{"  ", true, ""},
		{"true", true, ""},
		{"1", true, ""},
		{"TRUE", true, ""},
		{"false", false, ""},
		{" 0 ", false, ""},
		{"off", false, ""},
		{"on", true, ""},
		{"sometimes", false, `CACHE_WARMING_ENABLED: warming.enabled: "sometimes" is not a boolean`},
	} {
		t.Run(tc.value, func(t *testing.T) {
			t.Setenv(EnvEnabled, tc.value)
			got, err := EnabledFromEnv()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("EnabledFromEnv() = %v, %v; want error %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("EnabledFromEnv() = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
