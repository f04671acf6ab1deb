package tiercache_test

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/tiercacheprom"
)

func init() {
	tiercache.BenchRecorder = func() tiercache.Recorder {
		return tiercacheprom.Must(prometheus.NewRegistry(), tiercacheprom.Options{})
	}
}
