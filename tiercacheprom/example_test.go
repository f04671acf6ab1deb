package tiercacheprom_test

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/tiercacheprom"
)

func ExampleNew() {
	reg := prometheus.NewRegistry()
	rec, err := tiercacheprom.New(reg, tiercacheprom.Options{})
	if err != nil {
		panic(err)
	}
	c, err := tiercache.New(tiercache.Options{
		Namespace: "app",
		Redis:     tiercache.RedisOptions{URL: "redis://127.0.0.1:6379/0"},
		Recorder:  rec,
	})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
}
