#!/usr/bin/env bash
# Cascade as a package: installs the build tree into a temporary prefix, builds
# examples/embed against it with find_package(cascade), then builds the same example with
# add_subdirectory of the source tree (only the `embed` target: the libraries it needs).
#   tests/package/package.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
work=$(mktemp -d /tmp/cascade-package.XXXXXX)
trap 'rm -rf "$work"' EXIT
jobs=${CASCADE_PACKAGE_JOBS:-2}
# No build type (no -O, no -g): the point is that everything configures, compiles and links,
# and unoptimised code without debug info keeps the add_subdirectory build of the libraries
# as short as it gets (still minutes on two cores).
type=
step() { printf '\n--- %s (%ss)\n' "$*" "$SECONDS"; }

step "cmake --install into $work/prefix"
cmake --install "$build" --prefix "$work/prefix" >"$work/install.log"
prefix=$work/prefix
for f in bin/cascaded bin/cascadectl bin/cascade-mock-provider \
         lib/cmake/cascade/cascadeConfig.cmake lib/cmake/cascade/cascadeConfigVersion.cmake \
         lib/cmake/cascade/cascadeTargets.cmake lib/libcascade_engine.a \
         include/cascade/engine/engine.hpp include/cascade/engine/config.hpp \
         include/cascade/engine/job.hpp include/cascade/channels/channel.hpp \
         include/cascade/channels/outcome.hpp include/cascade/channels/http_client.hpp \
         include/cascade/util/url.hpp; do
  [ -e "$prefix/$f" ] || { echo "FAIL: $f was not installed" >&2; exit 1; }
done
# Internal headers stay out of the package.
if [ -e "$prefix/include/cascade/engine/shard.hpp" ] || [ -e "$prefix/include/cascade/redis" ]; then
  echo "FAIL: internal headers were installed" >&2; exit 1
fi
# Every installed header compiles on its own against the installed tree only.
for h in $(cd "$prefix/include/cascade" && find . -name '*.hpp' | sed 's|^\./||'); do
  echo "#include \"$h\"" >"$work/one.cpp"
  c++ -std=c++20 -fsyntax-only -I"$prefix/include/cascade" "$work/one.cpp" ||
    { echo "FAIL: installed header $h does not compile on its own" >&2; exit 1; }
done

step "examples/embed with find_package(cascade) from the prefix"
cmake -S "$src/examples/embed" -B "$work/find" -G Ninja -DCMAKE_BUILD_TYPE=$type \
  -DCMAKE_PREFIX_PATH="$prefix" >"$work/find.log"
cmake --build "$work/find" -j "$jobs" --target embed
[ -x "$work/find/embed" ]

step "the complete programs of README.md and docs/embedding.md, as written"
/usr/bin/python3 - "$src" "$work/snippets" <<'PY'
import os, re, sys
src, out = sys.argv[1], sys.argv[2]
n = 0
for doc in ("README.md", "docs/embedding.md"):
    for block in re.findall(r"```cpp\n(.*?)\n```", open(os.path.join(src, doc)).read(), re.S):
        if "int main(" not in block:
            continue
        n += 1
        d = os.path.join(out, str(n))
        os.makedirs(d)
        open(os.path.join(d, "main.cpp"), "w").write(block + "\n")
        open(os.path.join(d, "CMakeLists.txt"), "w").write(
            "cmake_minimum_required(VERSION 3.25)\nproject(snippet LANGUAGES CXX)\n"
            "find_package(cascade CONFIG REQUIRED)\nadd_executable(snippet main.cpp)\n"
            "target_link_libraries(snippet PRIVATE cascade::cascade)\n")
        print(f"{doc}: program {n}")
if n < 2:
    sys.exit("expected a complete program in README.md and in docs/embedding.md")
PY
for d in "$work"/snippets/*/; do
  cmake -S "$d" -B "$d/build" -G Ninja -DCMAKE_BUILD_TYPE=$type -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
  cmake --build "$d/build" -j "$jobs" | { grep -vE '^\[[0-9]+/[0-9]+\] ' || true; }
done

step "examples/embed with add_subdirectory(<source tree>)"
cmake -S "$src/examples/embed" -B "$work/sub" -G Ninja -DCMAKE_BUILD_TYPE=$type \
  -DCASCADE_SOURCE_DIR="$src" >"$work/sub.log"
# Not the top-level project: no tests, no benchmarks, no -Werror, no install rules.
for opt in CASCADE_BUILD_TESTS CASCADE_BUILD_BENCH CASCADE_WERROR CASCADE_INSTALL; do
  grep -q "^$opt:BOOL=OFF" "$work/sub/CMakeCache.txt" ||
    { echo "FAIL: $opt is not OFF under add_subdirectory" >&2; exit 1; }
done
cmake --build "$work/sub" -j "$jobs" --target embed | { grep -vE '^\[[0-9]+/[0-9]+\] ' || true; }
[ -x "$work/sub/embed" ]
step "package: OK"
