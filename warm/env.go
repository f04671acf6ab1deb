package warm

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// EnvEnabled is the environment variable that switches warming on or off,
// as in the seed: "true", "false", "1", "0" and the other forms
// strconv.ParseBool reads.
const EnvEnabled = "CACHE_WARMING_ENABLED"

// EnabledFromEnv reports whether CACHE_WARMING_ENABLED allows warming.
// Unset or empty means on. A value that is not a boolean is an error that
// names it, so that a typo does not silently turn warming off.
//
// The service (tiercache serve) loads and checks its warming configuration
// either way, and runs nothing when this is false; a library user does the
// same by not starting the Runner and Scheduler.
func EnabledFromEnv() (bool, error) { return enabledFrom(os.Getenv(EnvEnabled)) }

func enabledFrom(v string) (bool, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return true, nil
	}
	on, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("warm: %s=%q is not a boolean", EnvEnabled, v)
	}
	return on, nil
}
