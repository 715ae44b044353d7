#!/usr/bin/env bash
# Build llama.cpp's `llama-server` and `llama-bench` (CPU only, Release, static,
# no curl/openssl, no web UI download) from the llama.cpp copy vendored in the
# pinned `llama-cpp-python` sdist on PyPI. Python/pip is only used as a
# downloader. Binaries go to "$cache/llama.cpp/<version>/bin/"; if they are
# already there nothing is done. Prints the path of llama-server at the end.
#
# Env: CORRAL_CACHE (default ~/.cache/corral), JOBS (default 2),
#      GGML_NATIVE (default ON: the binaries run on the machine that built them).
set -euo pipefail

LLAMA_CPP_PYTHON_VERSION=0.3.36   # vendors llama.cpp commit 0c1e57098bba43ac29e6e3b677cdceebdd22334f

cache="${CORRAL_CACHE:-$HOME/.cache/corral}"
prefix="$cache/llama.cpp/$LLAMA_CPP_PYTHON_VERSION"
bindir="$prefix/bin"
jobs="${JOBS:-2}"

if [[ -x "$bindir/llama-server" && -x "$bindir/llama-bench" ]]; then
    echo "llama-server already built: $bindir/llama-server"
    exit 0
fi

command -v cmake >/dev/null || { echo "error: cmake not found (apt-get install -y cmake)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "error: python3 (with pip) is needed to download the sdist" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/corral-llama-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "downloading llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION sdist ..."
python3 -m pip download --quiet --no-deps --no-binary :all: \
    -d "$work/dl" "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION"
sdist="$(ls "$work"/dl/llama_cpp_python-"$LLAMA_CPP_PYTHON_VERSION".tar.gz)"
tar -xzf "$sdist" -C "$work"
src="$work/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION/vendor/llama.cpp"
[[ -f "$src/CMakeLists.txt" ]] || { echo "error: $src/CMakeLists.txt missing" >&2; exit 1; }

start=$(date +%s)
cmake -S "$src" -B "$work/build" \
    -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE="${GGML_NATIVE:-ON}" \
    -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_OPENMP=ON \
    -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF
cmake --build "$work/build" --config Release -j "$jobs" --target llama-server llama-bench
end=$(date +%s)

mkdir -p "$bindir"
for b in llama-server llama-bench; do
    install -m 0755 "$work/build/bin/$b" "$bindir/$b.tmp"
    mv -f "$bindir/$b.tmp" "$bindir/$b"
done
# Sanity: a static build must not need any libllama/libggml shared objects.
if ldd "$bindir/llama-server" 2>/dev/null | grep -Eq 'libllama|libggml|not found'; then
    echo "error: llama-server needs shared libs:" >&2
    ldd "$bindir/llama-server" >&2
    exit 1
fi

echo "build took $((end - start))s (cmake configure + build, -j$jobs)"
"$bindir/llama-server" --version 2>&1 | head -n 2 || true
echo "llama-bench:  $bindir/llama-bench"
echo "llama-server: $bindir/llama-server"
