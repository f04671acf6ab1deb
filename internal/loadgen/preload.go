package loadgen

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Preload writes every key of cfg once, with cfg.Workers writes in
// flight, so that a run starts with the keys present. Failures are
// counted, not returned: the error is only for a bad Config.
func Preload(ctx context.Context, t Target, cfg Config) (*Loaded, error) {
	if cfg.Duration == 0 && cfg.Requests == 0 {
		cfg.Requests = 1 // only the keys matter here
	}
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if cfg.TimeLimit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.TimeLimit)
		defer cancel()
	}
	keys := newKeySet(&cfg)
	val := value(cfg.ValueSize, cfg.Seed)
	var next atomic.Int64
	var mu sync.Mutex
	errs := counts{}
	var total int64
	start := time.Now()
	var wg sync.WaitGroup
	for i := range min(cfg.Workers, cfg.Keys) {
		wg.Go(func() {
			w := t.Worker(i)
			for ctx.Err() == nil {
				k := next.Add(1) - 1
				if k >= int64(len(keys.names)) {
					return
				}
				if out := w.Do(ctx, OpSet, keys.names[k], val); out.Err != "" {
					mu.Lock()
					errs[out.Err]++
					total++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return &Loaded{Keys: cfg.Keys, Elapsed: time.Since(start).Seconds(), ErrorsTotal: total, Errors: errs}, nil
}
