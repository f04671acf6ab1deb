package redisstore

import (
	"slices"
	"testing"

	"github.com/redis/rueidis"
)

// TestClientOption_LeastPrivilege checks the handshake settings that let
// the store run as the least-privileged ACL user of deploy/acl.conf, whose
// grants deploy/production_test.go checks with ACL DRYRUN: no CLIENT
// SETINFO (Redis 7.0 cannot grant it), and OPTIN tracking, which needs
// CLIENT CACHING, only with TrackOnly.
func TestClientOption_LeastPrivilege(t *testing.T) {
	t.Parallel()
	o := Options{Addrs: []string{"127.0.0.1:6379"}, OnInvalidation: newRecorder().record}
	opt, err := o.clientOption()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(opt.ClientSetInfo, rueidis.DisableClientSetInfo) {
		t.Errorf("ClientSetInfo = %v, want rueidis.DisableClientSetInfo", opt.ClientSetInfo)
	}
	if opt.ClientTrackingOptions == nil || slices.Contains(opt.ClientTrackingOptions, "OPTIN") {
		t.Errorf("ClientTrackingOptions = %#v, want the default mode (no OPTIN)", opt.ClientTrackingOptions)
	}
	o.TrackOnly = func(string) bool { return false }
	if opt, err = o.clientOption(); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(opt.ClientTrackingOptions, "OPTIN") || !slices.Contains(opt.ClientTrackingOptions, "NOLOOP") {
		t.Errorf("ClientTrackingOptions with TrackOnly = %#v, want OPTIN NOLOOP", opt.ClientTrackingOptions)
	}
}
