#!/usr/bin/env bash
# Install Debian's Chromium for the test that opens report.html in a headless browser (Python Playwright drives
# /usr/bin/chromium through `executable_path`; no browser is downloaded). Where this cannot run (not root, no apt),
# that test is skipped and says why.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install_chromium: not root or no apt-get; the browser test of report.html will be skipped" >&2
  exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
