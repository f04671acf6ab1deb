// Package warm fills a tiercache.Cache before it is asked: warming
// strategies, run in priority order, on start-up, on demand and on cron
// schedules, with one runner per fleet.
//
// A Strategy names a Generator that streams the items to write. The Runner
// groups them into batches of Strategy.BatchSize and writes each batch with
// Cache.SetItems, one pipelined round trip per batch and Redis node,
// pausing Strategy.DelayBetweenBatches between batches so that warming does
// not crowd out live traffic; without a delay, a batch is written while the
// next one is generated. A strategy's failure (a generator error or
// panic, an unreachable L2) ends that strategy only; the others run.
//
// A Scheduler runs strategies that have a cron Schedule. Instances that
// share a namespace share a fleet-wide record of each scheduled run, so a
// scheduled run happens on one instance only, whichever takes it first,
// however long it takes; and a running lock per strategy, so that a
// strategy does not overlap itself across the fleet.
//
// HotKeys tracks the most-read keys through tiercache.Options.OnAccess and
// its Refresher generator reloads them before they expire.
//
// Results are kept per strategy (Runner.Status), reported to the cache's
// metrics recorder through Cache.RecordWarm (the warming time is
// Result.Duration), and passed to Options.OnResult.
package warm
