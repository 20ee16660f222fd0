#!/usr/bin/env bash
# Builds llama.cpp once, portably, from the source vendored in the pinned llama-cpp-python
# sdist: the shared libraries the Python binding loads and llama.cpp's own server, in one
# CMake build. Prints the directory that holds the result (libllama.so, libggml*.so, one
# libggml-cpu-<variant>.so per instruction-set level, libmtmd.so, llama-server).
#
# Portable: GGML_NATIVE is off, so nothing depends on the build machine's CPU. The CPU
# backend is built for several x86-64 levels (GGML_BACKEND_DL + GGML_CPU_ALL_VARIANTS, as
# llama.cpp's release builds do) and ggml picks, at run time, the best one this CPU runs.
# AMX is left out: a VM can advertise AMX in CPUID that its OS never enabled (the
# "Illegal instruction" of issue 10), and on 2 cores AMX speeds up nothing Eva does.
#
# The result is kept in a cache keyed by this script's contents (sdist version and hash,
# every flag, the variant list), the compiler and the architecture, so a second clone on the
# same machine reuses it in seconds and no build made with other flags is ever reused.
# pip's wheel cache is never involved: its key is only a name and a version.
#
#   scripts/build_llama.sh                  build (or reuse) and print the directory
#   scripts/build_llama.sh --force          rebuild even when the cache has it
#   EVA_LLAMA_CPU_VARIANTS="x64 haswell"    a smaller variant set (for a repair or a test)
#   EVA_BUILD_CACHE=/path                   where builds are kept (default ~/.cache/eva)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

LLAMA_CPP_PYTHON_VERSION=0.3.36
LLAMA_CPP_PYTHON_SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
# x86-64 CPU backends shipped, from ggml's own list (ggml/src/CMakeLists.txt). Each costs
# about 25 s of build on 2 cores, so not all fourteen: x64 (any x86-64, SSE2), haswell
# (AVX2/FMA, most machines since 2013), skylakex (AVX-512), icelake (AVX-512 VNNI/VBMI:
# Ice Lake, Sapphire Rapids, Zen 4), alderlake (AVX-VNNI without AVX-512).
DEFAULT_CPU_VARIANTS="x64 haswell skylakex icelake alderlake"
variants="${EVA_LLAMA_CPU_VARIANTS:-$DEFAULT_CPU_VARIANTS}"
force=false
[ "${1:-}" = "--force" ] && force=true

cmake_flags=(
    -DCMAKE_BUILD_TYPE=Release
    -DBUILD_SHARED_LIBS=ON
    # every library and the server find each other beside themselves, wherever copied
    -DCMAKE_BUILD_RPATH='$ORIGIN' -DCMAKE_INSTALL_RPATH='$ORIGIN'
    -DGGML_NATIVE=OFF
    -DGGML_BACKEND_DL=ON
    -DGGML_CPU_ALL_VARIANTS=ON
    -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF
    # no downloads at build time (the server's web page is not used by Eva), no TLS
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF
)
targets=(llama ggml mtmd llama-server)

arch="$(uname -m)"
compiler="$(c++ --version | head -n 1)"
key="$( { cat "$0"; echo "$variants|$arch|$compiler"; } | sha256sum | cut -c1-16)"
cache="${EVA_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/eva}"
out="$cache/llama.cpp/$LLAMA_CPP_PYTHON_VERSION-$key"

if [ -f "$out/.complete" ] && [ "$force" = false ]; then
    echo "$out"; exit 0
fi

log() { echo "eva: $*" >&2; }
work="$(mktemp -d "${TMPDIR:-/tmp}/eva-llama-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The sdist, checked against its pinned hash by pip itself.
sdist_dir="$cache/sdist"
mkdir -p "$sdist_dir"
sdist="$sdist_dir/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz"
if ! { [ -f "$sdist" ] && echo "$LLAMA_CPP_PYTHON_SDIST_SHA256  $sdist" | sha256sum -c --quiet - 2>/dev/null; }; then
    log "downloading the llama-cpp-python $LLAMA_CPP_PYTHON_VERSION source"
    echo "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION --hash=sha256:$LLAMA_CPP_PYTHON_SDIST_SHA256" \
        > "$work/requirement.txt"
    "${PYTHON:-python3}" -m pip download -q --no-deps --no-binary :all: --require-hashes \
        -r "$work/requirement.txt" -d "$sdist_dir"
fi
echo "$LLAMA_CPP_PYTHON_SDIST_SHA256  $sdist" | sha256sum -c --quiet -

tar -xzf "$sdist" -C "$work"
src="$work/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION/vendor/llama.cpp"
if [ "$arch" = x86_64 ]; then
    # The chosen variants only, and -O1 off the token path (the script says why).
    "${PYTHON:-python3}" "$here/patch_llama_cmake.py" "$src" $variants
fi

log "building llama.cpp (portable; CPU variants: $variants); a few minutes on 2 cores"
start=$SECONDS
cmake -S "$src" -B "$work/build" -G "Unix Makefiles" "${cmake_flags[@]}" >"$work/configure.log" 2>&1 ||
    { cat "$work/configure.log" >&2; exit 1; }
cmake --build "$work/build" --target "${targets[@]}" -j "$(nproc)" >"$work/build.log" 2>&1 ||
    { tail -n 60 "$work/build.log" >&2; exit 1; }
log "built llama.cpp in $((SECONDS - start)) s"

# The Python binding without its own copy of llama.cpp (LLAMA_BUILD=OFF): it loads the
# libraries above through LLAMA_CPP_LIB_PATH (eva/native/llama.py). --no-cache-dir: pip's
# wheel cache would file it under the same name and version as a natively built one.
CMAKE_ARGS="-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF" "${PYTHON:-python3}" -m pip wheel -q \
    --no-deps --no-cache-dir -w "$work/wheel" "$sdist" >"$work/wheel.log" 2>&1 ||
    { cat "$work/wheel.log" >&2; exit 1; }

rm -rf "$out.partial"
mkdir -p "$out.partial"
cp -a "$work/build/bin/." "$out.partial/"
cp -a "$work/wheel" "$out.partial/wheel"
echo "version=$LLAMA_CPP_PYTHON_VERSION variants=$variants arch=$arch compiler=$compiler" \
    > "$out.partial/BUILD_INFO"
touch "$out.partial/.complete"
rm -rf "$out"
mv "$out.partial" "$out"
echo "$out"
