#!/usr/bin/env bash
# Installs the tools some tests drive besides Redis, from Debian's packages,
# when they are missing:
#   chromium, chromium-driver  the dashboard's end-to-end test (headless)
#   prometheus                 promtool, which checks deploy/prometheus/alerts.yml
# Under CI=true a failed install is fatal; elsewhere the tests that need a
# missing tool skip.
set -euo pipefail
# shellcheck source=apt-install.sh
. "$(dirname "$0")/apt-install.sh"

apt_install install-tools "the browser and promtool tests" \
	chromium=chromium chromedriver=chromium-driver promtool=prometheus
