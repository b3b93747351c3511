#!/usr/bin/env bash
# build-deps.sh DIR: builds libjpeg-turbo (TurboJPEG), libspng and libwebp (+ demux) from the
# Debian source packages of the versions installed (apt-get source, Debian's patches applied),
# as static libraries instrumented like the library under fuzz (clang, libFuzzer coverage, ASan,
# UBSan), into DIR/lib. `make fuzz FUZZ_DEPS=instrumented` runs it and links the harnesses with
# these instead of the system's shared libraries, so libFuzzer also sees coverage inside the
# decoders and ASan checks their memory accesses. Optional (not in CI): it downloads ~7 MB of
# sources from the Debian mirror and takes a few minutes on two cores; DIR/done marks a finished
# build, so it runs once per build folder.
#
# apt-get reads a private sources list (deb-src of the mirror the system uses) and keeps its
# lists under DIR/apt, so the system's apt configuration is not touched. Needs apt-get,
# dpkg-source (dpkg-dev), cmake and clang.
set -euo pipefail
dir=${1:?usage: fuzz/build-deps.sh DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
[ -f "$dir/done" ] && exit 0
jobs=${JOBS:-$(nproc)}
flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -gline-tables-only -O1"

# ---- sources: the installed versions, from the Debian mirror ------------------------------
apt=$dir/apt
mkdir -p "$apt/lists/partial" "$dir/src"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
{
  echo "deb-src [signed-by=$keyring] http://deb.debian.org/debian bookworm main"
  echo "deb-src [signed-by=$keyring] http://deb.debian.org/debian bookworm-updates main"
  echo "deb-src [signed-by=$keyring] http://deb.debian.org/debian-security bookworm-security main"
} >"$apt/sources.list"
aptopt=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=$apt/none"
        -o "Dir::State::Lists=$apt/lists" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
apt-get -qq "${aptopt[@]}" update
version() { dpkg-query -W -f='${source:Version}' "$1"; }
cd "$dir/src"
for pkg in libturbojpeg0:libjpeg-turbo libspng0:libspng libwebp7:libwebp; do
  bin=${pkg%%:*} srcpkg=${pkg##*:}
  v=$(version "$bin")
  [ -d "$srcpkg" ] && continue
  apt-get -qq "${aptopt[@]}" source --download-only "$srcpkg=$v" >/dev/null
  dsc=$(ls "${srcpkg}_${v#*:}.dsc")
  dpkg-source -q -x "$dsc" "$srcpkg" >/dev/null
done

# ---- builds: static, instrumented, only the library targets ---------------------------------
build() { # NAME SRC TARGETS... -- CMAKE_ARGS...
  local name=$1 src=$2
  shift 2
  local targets=()
  while [ "$1" != -- ]; do targets+=("$1"); shift; done
  shift
  cmake -S "$src" -B "$dir/build/$name" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=clang \
    -DCMAKE_C_FLAGS_RELEASE="$flags" -DCMAKE_POSITION_INDEPENDENT_CODE=ON "$@" >/dev/null
  cmake --build "$dir/build/$name" -j "$jobs" --target "${targets[@]}" >/dev/null
}
build jpeg "$dir/src/libjpeg-turbo" turbojpeg-static -- -DENABLE_SHARED=OFF -DWITH_SIMD=OFF -DWITH_JAVA=OFF
# libspng is one file (and its CMake file cannot build only the static library)
mkdir -p "$dir/build/spng"
# shellcheck disable=SC2086
clang $flags -c "$dir/src/libspng/spng/spng.c" -o "$dir/build/spng/spng.o"
ar rcs "$dir/build/spng/libspng.a" "$dir/build/spng/spng.o"
build webp "$dir/src/libwebp" webpdemux webpdecoder -- -DWEBP_BUILD_ANIM_UTILS=OFF -DWEBP_BUILD_CWEBP=OFF \
  -DWEBP_BUILD_DWEBP=OFF -DWEBP_BUILD_GIF2WEBP=OFF -DWEBP_BUILD_IMG2WEBP=OFF -DWEBP_BUILD_VWEBP=OFF \
  -DWEBP_BUILD_WEBPINFO=OFF -DWEBP_BUILD_WEBPMUX=OFF -DWEBP_BUILD_EXTRAS=OFF -DWEBP_BUILD_LIBWEBPMUX=OFF

mkdir -p "$dir/lib" "$dir/include/webp"
cp "$dir/src/libjpeg-turbo/turbojpeg.h" "$dir/src/libspng/spng/spng.h" "$dir/include/"
cp "$dir/src/libwebp/src/webp/"{decode,demux,mux_types,types}.h "$dir/include/webp/"
cp "$dir/build/jpeg/libturbojpeg.a" "$dir/lib/libturbojpeg.a"
cp "$dir/build/spng/libspng.a" "$dir/lib/libspng.a"
cp "$dir/build/webp/libwebpdemux.a" "$dir/lib/libwebpdemux.a"
cp "$dir/build/webp/libwebpdecoder.a" "$dir/lib/libwebpdecoder.a"
for v in libturbojpeg0 libspng0 libwebp7; do echo "$v $(version $v)"; done >"$dir/done"
echo "build-deps: instrumented static libraries in $dir/lib (headers in $dir/include):"
cat "$dir/done"
