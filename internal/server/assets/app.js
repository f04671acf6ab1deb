// The tiercache dashboard: polls GET /v1/stats, GET /readyz and GET
// /v1/fleet and draws
// the figures with uPlot: the cache's, and the server's own requests. The page
// URL may carry ?refresh=<seconds> (default 2) for the polling period.
//
// When the server has a token, the page asks for it once and keeps it in
// sessionStorage (this tab only, gone when it closes), and sends it as
// the bearer header with every call.
(function () {
  "use strict";

  var params = new URLSearchParams(location.search);
  var refresh = Math.max(0.5, parseFloat(params.get("refresh")) || 2) * 1000;
  var historyLen = 150;

  function $(id) { return document.getElementById(id); }
  function setText(id, text) { var el = $(id); if (el.textContent !== text) el.textContent = text; }

  function fmtBytes(n) {
    if (!isFinite(n)) return "–";
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
  }
  function fmtPct(r) { return isFinite(r) ? (100 * r).toFixed(1) + "%" : "–"; }
  function fmtDur(ns) {
    if (!ns) return "–";
    if (ns < 1e3) return ns.toFixed(0) + " ns";
    if (ns < 1e6) return (ns / 1e3).toFixed(1) + " µs";
    if (ns < 1e9) return (ns / 1e6).toFixed(1) + " ms";
    return (ns / 1e9).toFixed(2) + " s";
  }
  function fmtNum(n) { return isFinite(n) ? Math.round(n).toLocaleString("en-US") : "–"; }
  function sumRequests(req) {
    var all = 0, l1 = 0, l2 = 0;
    Object.keys(req || {}).forEach(function (op) {
      Object.keys(req[op]).forEach(function (res) {
        var n = req[op][res]; all += n;
        if (res === "hit_l1") l1 += n;
        if (res === "hit_l2") l2 += n;
      });
    });
    return { all: all, l1: l1, l2: l2 };
  }

  // Charts: each keeps its own columns, x first (Unix seconds).
  var charts = {};
  function makeChart(id, series) {
    var el = $(id);
    var data = [[]];
    var opts = {
      width: Math.max(300, el.clientWidth || 400), height: 200,
      series: [{}].concat(series.map(function (s) { return { label: s[0], stroke: s[1], width: 2, spanGaps: false }; })),
      axes: [{}, { size: 60 }],
      legend: { live: false },
    };
    series.forEach(function () { data.push([]); });
    charts[id] = { plot: new uPlot(opts, data, el), data: data, el: el };
  }
  function pushPoint(id, t, values) {
    var c = charts[id];
    c.data[0].push(t);
    values.forEach(function (v, i) { c.data[i + 1].push(v); });
    if (c.data[0].length > historyLen) c.data.forEach(function (col) { col.shift(); });
    c.plot.setData(c.data);
    // At least a minute of x axis: with few points uPlot would span years.
    var xs = c.data[0], last = xs[xs.length - 1];
    if (last - xs[0] < 60) c.plot.setScale("x", { min: last - 60, max: last });
  }
  function resizeCharts() {
    Object.keys(charts).forEach(function (id) {
      var c = charts[id];
      c.plot.setSize({ width: Math.max(300, c.el.clientWidth), height: 200 });
    });
  }

  function initCharts() {
    makeChart("chart-hits", [["overall", "#3461c1"], ["L1", "#1f883d"]]);
    makeChart("chart-ops", [["reads/s", "#3461c1"]]);
    makeChart("chart-latency", [["L1 p50", "#1f883d"], ["L1 p99", "#8fd19e"], ["L2 p50", "#3461c1"], ["L2 p99", "#9db3e8"]]);
    makeChart("chart-memory", [["L1", "#1f883d"], ["Redis used", "#3461c1"], ["Redis max", "#c62828"]]);
    makeChart("chart-http", [["2xx", "#1f883d"], ["3xx", "#3461c1"], ["4xx", "#b35900"], ["5xx", "#c62828"]]);
    makeChart("chart-http-latency", [["p50", "#3461c1"], ["p99", "#9db3e8"]]);
    makeChart("chart-coherence", [["lag p50", "#3461c1"], ["lag p99", "#9db3e8"], ["missed (interval)", "#c62828"]]);
    window.addEventListener("resize", resizeCharts);
  }

  var prev = null; // the previous report, for rates

  function renderStats(rep) {
    var now = Date.parse(rep.timestamp) / 1000;
    var st = rep.counters, req = sumRequests(st.requests);
    setText("namespace", rep.namespace);
    setText("topology-kind", rep.topology);
    setText("requests-total", fmtNum(req.all));
    // No ratio before the first read.
    var pct = function (r) { return req.all ? fmtPct(r) : "–"; };
    setText("hit-ratio", pct(rep.hit_ratio.overall));
    setText("hit-ratio-tiers", "L1 " + pct(rep.hit_ratio.l1) + " · L2 " + pct(rep.hit_ratio.l2));

    var ops = null, ratio = null, l1ratio = null;
    if (prev) {
      var dt = now - prev.t, d = req.all - prev.req.all;
      if (dt > 0) ops = d / dt;
      if (d > 0) {
        ratio = (req.l1 + req.l2 - prev.req.l1 - prev.req.l2) / d;
        l1ratio = (req.l1 - prev.req.l1) / d;
      }
    }
    setText("ops", ops === null ? "…" : ops.toFixed(ops < 10 ? 1 : 0));

    var lat = rep.latency;
    setText("latency-l1", "L1 " + fmtDur(lat.l1.p50_ns) + " / " + fmtDur(lat.l1.p99_ns));
    setText("latency-l2", "L2 " + fmtDur(lat.l2.p50_ns) + " / " + fmtDur(lat.l2.p99_ns));
    setText("latency-loader", "loader " + fmtDur(lat.loader.p50_ns) + " / " + fmtDur(lat.loader.p99_ns));

    setText("l1-bytes", fmtBytes(st.l1_bytes));
    setText("l1-entries", fmtNum(st.l1_entries) + " entries of " + (rep.l1_max_bytes ? fmtBytes(rep.l1_max_bytes) : "no L1"));
    $("l1-bar").style.width = rep.l1_max_bytes ? Math.min(100, 100 * st.l1_bytes / rep.l1_max_bytes) + "%" : "0";

    var used = 0, max = 0, anyMax = false, masters = 0;
    rep.nodes.forEach(function (n) {
      if (!n.up || n.role !== "master") return;
      masters++;
      used += n.used_memory;
      if (n.maxmemory > 0) { max += n.maxmemory; anyMax = true; }
    });
    // No master answered: the figure is unknown, not zero.
    var memKnown = rep.topology !== "memory" && masters > 0;
    if (rep.topology === "memory") {
      setText("redis-memory", "in-process");
      setText("redis-memory-sub", "no Redis: the L2 is in this process");
      $("redis-bar").style.width = "0";
    } else if (!memKnown) {
      setText("redis-memory", "unknown");
      setText("redis-memory-sub", "no Redis master answered");
      $("redis-bar").style.width = "0";
    } else {
      setText("redis-memory", fmtBytes(used));
      setText("redis-memory-sub", anyMax ? "of " + fmtBytes(max) + " maxmemory (" + fmtPct(used / max) + ")" : "no maxmemory set");
      var bar = $("redis-bar");
      bar.style.width = anyMax ? Math.min(100, 100 * used / max) + "%" : "0";
      bar.className = anyMax && used / max >= 0.8 ? "warn" : "";
    }

    var br = $("breaker");
    br.dataset.state = st.breaker;
    setText("breaker", st.breaker);
    setText("queue", fmtNum(st.queue_length) + " waiting, " + fmtNum(st.queue_overflows) + " refused");
    setText("breaker-detail", (st.breaker_open_seconds > 0 ? "open for " + fmtDur(st.breaker_open_seconds * 1e9) + ", " : "") +
      fmtNum(st.breaker_refused) + (st.breaker_refused === 1 ? " call refused" : " calls refused"));
    var missedNow = renderCoherence(rep.coherence);

    renderNodes(rep);
    renderCommands(rep.nodes);
    renderWarming((rep.warming || []).slice().reverse());
    renderHTTP(rep.http, now);

    var ms = function (ns) { return ns ? ns / 1e6 : null; };
    pushPoint("chart-hits", now, [ratio, l1ratio]);
    pushPoint("chart-ops", now, [ops]);
    pushPoint("chart-latency", now, [ms(lat.l1.p50_ns), ms(lat.l1.p99_ns), ms(lat.l2.p50_ns), ms(lat.l2.p99_ns)]);
    var mib = 1024 * 1024;
    pushPoint("chart-memory", now, [st.l1_bytes / mib, memKnown ? used / mib : null, memKnown && anyMax ? max / mib : null]);
    var co = rep.coherence;
    pushPoint("chart-coherence", now, co ? [ms(co.lag.p50_ns), ms(co.lag.p99_ns), missedNow] : [null, null, null]);

    prev = { t: now, req: req };
    setText("updated", "updated " + new Date().toLocaleTimeString());
  }

  // The coherence canary: the coherence section of /v1/stats, absent when
  // the canary is off. Returns the markers missed since the previous poll.
  var prevMissed = null;
  function renderCoherence(co) {
    var el = $("coherence-lag");
    if (!co) {
      setText("coherence-lag", "off");
      setText("coherence-markers", "canary off (cache.canary.interval)");
      setText("coherence-clock", "");
      el.dataset.missed = "no";
      prevMissed = null;
      return null;
    }
    setText("coherence-lag", co.lag.count ? fmtDur(co.lag.p50_ns) + " / " + fmtDur(co.lag.p99_ns) : "–");
    setText("coherence-markers", fmtNum(co.seen) + " markers seen, " + fmtNum(co.missed) + " missed, from " +
      fmtNum(co.watching) + (co.watching === 1 ? " instance" : " instances"));
    setText("coherence-clock", "Redis clock offset " + (co.clock_offset_ns < 0 ? "−" : "+") + fmtDur(Math.abs(co.clock_offset_ns)) +
      " ± " + fmtDur(co.clock_uncertainty_ns));
    var d = prevMissed === null || co.missed < prevMissed ? null : co.missed - prevMissed;
    el.dataset.missed = d ? "yes" : "no";
    prevMissed = co.missed;
    return d;
  }

  // Redis INFO commandstats per node, busiest commands first.
  function renderCommands(nodes) {
    var rows = [];
    nodes.forEach(function (n) {
      var cs = n.commandstats || {};
      Object.keys(cs).sort(function (a, b) { return cs[b].calls - cs[a].calls || (a < b ? -1 : 1); }).forEach(function (name) {
        var c = cs[name], tr = document.createElement("tr"), failed = c.rejected_calls + c.failed_calls;
        cell(tr, n.addr);
        cell(tr, name);
        cell(tr, fmtNum(c.calls));
        cell(tr, c.calls ? (c.time_ns / 1e3 / c.calls).toFixed(2) : "–");
        cell(tr, fmtNum(failed), failed ? "fail" : "");
        rows.push(tr);
      });
    });
    fillTable("commands", rows);
    $("commands-empty").hidden = rows.length > 0;
  }

  // The fleet: GET /v1/fleet, every instance of the namespace that
  // publishes heartbeats. Silent ones are red; a value on which a member
  // disagrees with most live ones is orange, the reason in its tooltip.
  function renderFleet(r) {
    $("fleet").hidden = r.status === 404;
    if (r.status === 404) {
      fillTable("fleet", []);
      $("fleet-empty").hidden = false;
      setText("fleet-summary", "");
      return;
    }
    $("fleet-empty").hidden = true;
    if (r.status !== 200) { setText("fleet-summary", "fleet: " + errorText(r)); return; }
    var f = r.body;
    setText("fleet-summary", fmtNum(f.live) + " live, " + fmtNum(f.silent) + " silent, " + fmtNum(f.stopped) + " stopped" +
      (f.disagreeing ? ", " + fmtNum(f.disagreeing) + " disagreeing" : "") + " · heartbeat every " + fmtDur(f.heartbeat_ns));
    fillTable("fleet", f.members.map(function (m) {
      var tr = document.createElement("tr"), dis = m.disagrees || [];
      if (m.self) tr.className = "self";
      var on = function (what) {
        var why = dis.filter(function (d) { return d.indexOf(what + " ") === 0; });
        return why.length ? why.join("; ") : "";
      };
      var c = function (text, what, cls) {
        var why = what ? on(what) : "", td = cell(tr, text, why ? "disagree" : cls || "");
        if (why) td.title = why;
        return td;
      };
      c(m.id + (m.self ? " (this one)" : ""));
      c(m.address || "–");
      c(m.version || "–", "version");
      c(m.state, "", m.state === "live" ? "pass" : m.state === "silent" ? "fail" : "unknown");
      c(m.health, "", m.health === "healthy" ? "pass" : m.health === "degraded" ? "warn" : "fail");
      c(m.epoch ? String(m.epoch) : "–", "epoch");
      c(m.config || "–", "config");
      c(fmtNum(m.l1_entries) + " / " + fmtBytes(m.l1_bytes));
      c(fmtNum(m.queue_length), "", m.queue_length ? "warn" : "");
      c(fmtNum(m.link_resets));
      c(m.canary_interval_ns ? fmtDur(m.coherence_lag_p99_ns) : "off");
      c(m.canary_interval_ns ? fmtNum(m.markers_missed) : "–", "", m.markers_missed ? "fail" : "");
      c(fmtDur(m.age_ns) + " ago", "", m.state === "silent" ? "fail" : "");
      return tr;
    }));
  }

  // The server's own requests: the http section of /v1/stats, absent
  // when the server has no metrics. The rate, the status split and the
  // percentiles are over the interval since the previous poll; the
  // routes table's percentiles since the server started.
  var cacheRoute = /^[A-Z]+ \/v1\/(cache\/|mget$|mset$|mdelete$)/;
  var classes = ["2xx", "3xx", "4xx", "5xx"];
  var prevHTTP = null;
  function codeClasses(codes) {
    var c = { "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0, all: 0 };
    Object.keys(codes || {}).forEach(function (k) {
      var cls = k.charAt(0) + "xx";
      if (cls in c) c[cls] += codes[k];
      c.all += codes[k];
    });
    return c;
  }
  // cacheDurations sums the duration histograms of the cache routes.
  function cacheDurations(h) {
    var out = { count: 0, buckets: h.duration.buckets.map(function (b) { return { le: b.le, count: 0 }; }) };
    h.routes.forEach(function (r) {
      if (!cacheRoute.test(r.route)) return;
      out.count += r.duration.count;
      r.duration.buckets.forEach(function (b, i) { if (out.buckets[i]) out.buckets[i].count += b.count; });
    });
    return out;
  }
  function diffHist(cur, prev) {
    if (!prev || prev.buckets.length !== cur.buckets.length) return cur;
    return { count: cur.count - prev.count, buckets: cur.buckets.map(function (b, i) { return { le: b.le, count: b.count - prev.buckets[i].count }; }) };
  }
  // quantile estimates the q-quantile of a cumulative histogram, in
  // seconds, interpolating within the bucket as Prometheus's
  // histogram_quantile does; past the last bound it answers that bound.
  function quantile(q, h) {
    if (!h.count) return null;
    var rank = q * h.count, lo = 0, below = 0;
    for (var i = 0; i < h.buckets.length; i++) {
      var b = h.buckets[i];
      if (b.count >= rank) return lo + (b.le - lo) * (b.count > below ? (rank - below) / (b.count - below) : 1);
      lo = b.le; below = b.count;
    }
    return lo;
  }
  function fmtSec(s) { return s === null ? "–" : fmtDur(s * 1e9); }

  function renderHTTP(h, now) {
    $("http-routes-empty").hidden = !!h;
    if (!h) {
      setText("http-rate", "off");
      setText("http-codes", "HTTP metrics are off");
      setText("http-conns", "");
      setText("http-latency", "–");
      fillTable("http-routes", []);
      return;
    }
    var codes = codeClasses(h.codes), dur = cacheDurations(h);
    var dt = 0, d = null, lat = null;
    // A restarted server counts from zero again: no interval across it.
    if (prevHTTP && codes.all < prevHTTP.codes.all) prevHTTP = null;
    if (prevHTTP) {
      dt = now - prevHTTP.t;
      d = {};
      classes.concat("all").forEach(function (k) { d[k] = codes[k] - prevHTTP.codes[k]; });
      lat = diffHist(dur, prevHTTP.dur);
    }
    var rate = d && dt > 0 ? d.all / dt : null;
    setText("http-rate", rate === null ? "…" : rate.toFixed(rate < 10 ? 1 : 0));
    setText("http-codes", !d ? "…" : !d.all ? "no requests" : classes.filter(function (k) { return k !== "3xx" || d[k]; })
      .map(function (k) { return k + " " + fmtPct(d[k] / d.all); }).join(" · "));
    setText("http-conns", fmtNum(h.connections_open) + " connections open, " + fmtNum(h.in_flight) + " in flight");
    var p50 = lat ? quantile(0.5, lat) : null, p99 = lat ? quantile(0.99, lat) : null;
    setText("http-latency", p50 === null ? "–" : fmtSec(p50) + " / " + fmtSec(p99));
    setText("http-latency-sub", !lat ? "cache routes, last interval" : lat.count ? "cache routes, " + fmtNum(lat.count) + " requests in the last interval" :
      "no cache requests in the last interval");
    var perSec = function (k) { return d && dt > 0 ? d[k] / dt : null; };
    pushPoint("chart-http", now, classes.map(perSec));
    pushPoint("chart-http-latency", now, [p50 === null ? null : p50 * 1e3, p99 === null ? null : p99 * 1e3]);
    renderRoutes(h.routes);
    prevHTTP = { t: now, codes: codes, dur: dur };
  }
  function renderRoutes(routes) {
    fillTable("http-routes", routes.map(function (r) {
      var tr = document.createElement("tr"), c = codeClasses(r.codes);
      cell(tr, r.route);
      cell(tr, fmtNum(r.requests));
      cell(tr, fmtNum(c["4xx"]), c["4xx"] ? "warn" : "");
      cell(tr, fmtNum(c["5xx"]), c["5xx"] ? "fail" : "");
      cell(tr, fmtSec(quantile(0.5, r.duration)));
      cell(tr, fmtSec(quantile(0.99, r.duration)));
      return tr;
    }));
  }

  function cell(tr, text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }
  function fillTable(id, rows) {
    var tbody = $(id).tBodies[0];
    var fresh = document.createElement("tbody");
    rows.forEach(function (r) { fresh.appendChild(r); });
    tbody.parentNode.replaceChild(fresh, tbody);
  }

  function renderNodes(rep) {
    var rows = rep.nodes.map(function (n) {
      var tr = document.createElement("tr");
      cell(tr, n.addr);
      cell(tr, n.role || "?");
      cell(tr, n.up ? "up" : "down", n.up ? "pass" : "fail").title = n.error || "";
      cell(tr, n.up ? fmtBytes(n.used_memory) + (n.maxmemory ? " / " + fmtBytes(n.maxmemory) : "") : "–");
      cell(tr, n.up ? fmtNum(n.connected_clients) : "–");
      cell(tr, n.up ? fmtNum(n.instantaneous_ops_per_sec) : "–");
      return tr;
    });
    if (rep.topology === "memory") {
      var tr = document.createElement("tr");
      cell(tr, "in-process store");
      cell(tr, "memory"); cell(tr, "up", "pass"); cell(tr, "–"); cell(tr, "–"); cell(tr, "–");
      rows.push(tr);
    }
    fillTable("topology", rows);
  }

  function renderHealth(h) {
    var badge = $("status");
    badge.dataset.status = h.status;
    setText("status", h.status);
    if (!h.checks) return; // the verdict alone: sent without the token
    var c = h.checks, rows = [];
    var add = function (name, chk, detail) {
      var tr = document.createElement("tr");
      cell(tr, name);
      cell(tr, chk.status, chk.status);
      cell(tr, [detail, chk.message].filter(Boolean).join(" — "), "detail");
      rows.push(tr);
    };
    add("connectivity", c.connectivity, c.connectivity.reachable + "/" + c.connectivity.nodes + " nodes, " + c.connectivity.response_time_ms.toFixed(2) + " ms");
    // A check that could not run has no figures to show.
    var known = function (chk) { return chk.status !== "unknown"; };
    add("memory", c.memory, !known(c.memory) ? "" : c.memory.maxmemory ? fmtPct(c.memory.usage_ratio) + " of " + fmtBytes(c.memory.maxmemory) : fmtBytes(c.memory.used_bytes) + " used");
    add("circuit breaker", c.circuit_breaker, c.circuit_breaker.state);
    add("replication", c.replication, known(c.replication) ? replicationDetail(c.replication) : "");
    add("tracking", c.tracking, !known(c.tracking) ? "" : (c.tracking.up ? "link up" : "link down") + ", " + c.tracking.link_resets + " resets" +
      (c.tracking.link_suspects ? " (" + c.tracking.link_suspects + " missed liveness probes)" : ""));
    fillTable("checks", rows);

    var sum = "";
    if (c.replication.sentinel) {
      var s = c.replication.sentinel;
      sum = "Sentinel " + s.master_name + ": master " + s.master_address + ", " + s.agreeing + "/" + s.sentinels +
        " sentinels agree (quorum " + s.quorum + "), " + s.replicas + " replicas";
      var sentinels = (s.sentinel_nodes || []).map(function (n) {
        if (n.error) return n.address + " unreachable";
        if (n.master_down) return n.address + " flags the master down";
        return n.address + (n.master_address === s.master_address ? " ok" : " names " + n.master_address);
      });
      var replicas = (s.replica_nodes || []).map(function (r) { return r.address + (r.failing ? " failing" : " ok"); });
      if (sentinels.length) sum += ". Sentinels: " + sentinels.join(", ");
      if (replicas.length) sum += ". Replicas: " + replicas.join(", ");
    } else if (c.replication.cluster) {
      var cl = c.replication.cluster;
      sum = "Cluster " + cl.cluster_state + ": " + cl.masters + " masters, " + cl.replicas + " replicas" +
        (cl.failing_nodes && cl.failing_nodes.length ? ", failing: " + cl.failing_nodes.join(", ") : "");
    } else if (c.replication.role && c.replication.role !== "memory") {
      sum = "Standalone " + c.replication.role + ", " + c.replication.connected_replicas + " replicas connected";
    }
    setText("topology-summary", sum);
  }
  function replicationDetail(r) {
    var d = r.role ? r.role : "";
    if (r.connected_replicas) d += ", " + r.connected_replicas + " replicas";
    if (r.sentinel) d += ", " + r.sentinel.agreeing + "/" + r.sentinel.sentinels + " sentinels agree";
    if (r.cluster) d += ", cluster_state " + r.cluster.cluster_state;
    return d;
  }

  // Warming runs: the last ones the cache recorded (Report.warming,
  // oldest first), whatever ran them: tiercache serve's scheduler, POST
  // /v1/warm, or a program calling Cache.RecordWarm. A run with failed
  // keys failed, as `tiercache warm` says with its exit code.
  function renderWarming(runs) {
    var rows = runs.map(function (r) {
      var tr = document.createElement("tr");
      cell(tr, r.strategy);
      cell(tr, r.finished ? new Date(r.finished).toLocaleTimeString() : "–");
      cell(tr, fmtNum(r.keys));
      cell(tr, fmtNum(r.failed), r.failed > 0 ? "fail" : "");
      cell(tr, fmtDur(r.duration_ns));
      var result = "ok";
      if (r.error) result = "error";
      else if (r.failed > 0) result = "failed: " + fmtNum(r.failed) + (r.failed === 1 ? " key" : " keys");
      cell(tr, result, result === "ok" ? "pass" : "fail").title = r.error || "";
      return tr;
    });
    fillTable("warming", rows);
    $("warming-empty").hidden = rows.length > 0;
  }

  // The token, for a server that has one.
  var tokenKey = "tiercache-token";
  var memoryToken = ""; // when sessionStorage is not available
  function storedToken() {
    try { return sessionStorage.getItem(tokenKey) || ""; } catch (e) { return ""; }
  }
  // askToken shows the token form; refused tells that the stored token
  // was refused.
  function askToken(refused) {
    var form = $("login");
    if (!form.hidden) return;
    setText("login-message", refused ? "The token was refused." : "");
    form.hidden = false;
    $("token").focus();
  }
  function initLogin() {
    $("login").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var tok = $("token").value.trim();
      if (!tok) return;
      try { sessionStorage.setItem(tokenKey, tok); } catch (e) { memoryToken = tok; }
      $("token").value = "";
      $("login").hidden = true;
      setText("updated", "connecting…");
    });
  }
  function currentToken() { return storedToken() || memoryToken; }
  function getJSON(path) {
    var headers = { Accept: "application/json" }, tok = currentToken();
    if (tok) headers.Authorization = "Bearer " + tok;
    return fetch(path, { headers: headers, cache: "no-store" }).then(function (r) {
      // Ask only if the token sent is still the current one: a call made
      // before the token was typed says nothing about it.
      if (r.status === 401 && tok === currentToken()) askToken(tok !== "");
      return r.json().then(function (body) { return { status: r.status, body: body }; });
    });
  }
  function errorText(r) {
    return r.body && r.body.error && r.body.error.message ? r.body.error.message : String(r.status);
  }

  function pollStats() {
    getJSON("/v1/stats").then(function (r) {
      if (r.status === 200) renderStats(r.body);
      else if (r.status === 401) setText("updated", "the server needs its token");
      else setText("updated", "stats: " + errorText(r));
    }).catch(function (e) { setText("updated", "stats unavailable: " + e); })
      .finally(function () { setTimeout(pollStats, refresh); });
  }
  function pollFleet() {
    getJSON("/v1/fleet").then(function (r) { if (r.status !== 401) renderFleet(r); })
      .catch(function (e) { setText("fleet-summary", "fleet unavailable: " + e); })
      .finally(function () { setTimeout(pollFleet, refresh * 2.5); });
  }
  function pollHealth() {
    getJSON("/readyz").then(function (r) { renderHealth(r.body); })
      .catch(function () { var b = $("status"); b.dataset.status = "unknown"; setText("status", "unreachable"); })
      .finally(function () { setTimeout(pollHealth, refresh * 2.5); });
  }

  initLogin();
  initCharts();
  // Each chart's columns (x first), for the end-to-end test and for a look
  // from the browser's console.
  window.tiercacheChartData = function (id) { return charts[id].data; };
  pollStats();
  pollHealth();
  pollFleet();
})();
