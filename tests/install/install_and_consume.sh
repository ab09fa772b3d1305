#!/bin/sh
# Installs this build into a temporary prefix, then configures, builds and runs a separate
# project that finds it with find_package(gonfalon).
#   install_and_consume.sh BUILD_DIR CONSUMER_SOURCE FLAG_FILE WORK_DIR
set -eu
build=$1 consumer=$2 flags=$3 work=$4
rm -rf "$work"
mkdir -p "$work"
cmake --install "$build" --prefix "$work/prefix" > "$work/install.log"
launcher=""
if command -v ccache > /dev/null; then launcher="-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"; fi
cmake -S "$consumer" -B "$work/build" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" $launcher > "$work/configure.log" 2>&1 ||
  { cat "$work/configure.log"; exit 1; }
cmake --build "$work/build" > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
"$work/build/consumer" "$flags"
