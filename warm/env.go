package warm

import (
	"os"

	"github.com/tiercache/tiercache/config"
)

// EnvEnabled is the environment variable that switches warming on or off,
// as in the seed (warming.enabled in the configuration file): "true",
// "false", "1", "0" and the other forms config.ParseBool reads.
const EnvEnabled = "CACHE_WARMING_ENABLED"

// EnabledFromEnv reports whether CACHE_WARMING_ENABLED allows warming.
// Unset or empty means on. A value that is not a boolean is an error that
// names it, so that a typo does not silently turn warming off.
//
// The service (tiercache serve) loads and checks its warming configuration
// either way, and runs nothing when this is false; a library user does the
// same by not starting the Runner and Scheduler.
func EnabledFromEnv() (bool, error) {
	c, err := config.FromEnv(func(name string) (string, bool) {
		if name != EnvEnabled {
			return "", false // only this variable, not the whole configuration
		}
		return os.LookupEnv(name)
	})
	if err != nil {
		return false, err
	}
	if !c.Set("warming.enabled") {
		return true, nil
	}
	return c.Warming.Enabled, nil
}
