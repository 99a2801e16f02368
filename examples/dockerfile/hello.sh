#!/bin/sh
# The example's "project": prints what the image was built with and what the workspace holds.
set -eu
echo "image greeting: $(cat /etc/skiff-example/greeting)"
echo "workspace message: $(cat "$(dirname "$0")/message.txt")"
