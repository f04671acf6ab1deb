#!/bin/sh
# frozen-get-latency.sh READ_TIMEOUT: the latency of GETs to `tiercache serve`
# while its Redis is frozen (SIGSTOP), the first one included. Needs
# redis-server, curl and python3; TIERCACHE names the binary (default:
# tiercache on PATH). Example: scripts/frozen-get-latency.sh 500ms
set -e
free() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
RP=$(free); HP=$(free); D=$(mktemp -d)
redis-server --port $RP --save '' --appendonly no --bind 127.0.0.1 >$D/redis.log 2>&1 & R=$!
sleep 0.5
CACHE_READ_TIMEOUT=$1 STATE_DIRECTORY=$D REDIS_URL=redis://127.0.0.1:$RP ${TIERCACHE:-tiercache} serve --addr 127.0.0.1:$HP >$D/serve.log 2>&1 & S=$!
until curl -sf -o /dev/null http://127.0.0.1:$HP/readyz; do sleep 0.1; done
curl -s -o /dev/null -X PUT --data v http://127.0.0.1:$HP/v1/cache/held
curl -s -o /dev/null http://127.0.0.1:$HP/v1/cache/held
kill -STOP $R; sleep 1   # the liveness probe ends the L1's freshness within ~0.75 s
for k in held new1 new2 new3 new4 new5 new6 held; do
  curl -s -o /dev/null -w "GET $k %{http_code} %{time_total}s\n" http://127.0.0.1:$HP/v1/cache/$k
done
kill -CONT $R; kill $S; wait $S || true; kill $R; wait $R || true; rm -rf $D
