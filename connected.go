package tiercache

// Connected reports whether the cache has an L2 to talk to: always true
// for the in-memory L2 and for a Redis connected at New; with
// RedisOptions.LazyConnect, false until the background connection to
// Redis has succeeded. It says nothing about whether Redis answers now
// (see BreakerState and Health): once true, it stays true.
func (c *Cache) Connected() bool {
	if rs := c.redisStore(); rs != nil {
		return rs.Connected()
	}
	return true
}
