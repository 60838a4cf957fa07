#!/usr/bin/env bash
# Build execr's CPython for wasm32-wasi (WASI preview 1 command) from Debian source packages
# with Debian's toolchain. See README.md beside this file for every flag and patch.
#
#   tools/cpython-wasi/build.sh OUT_DIR
#
# writes OUT_DIR/python.wasm, OUT_DIR/python313.zip and OUT_DIR/SHA256SUMS.
# Everything else happens in $WORK (default /work/cpython-build), outside the repo.
#
# Knobs (environment; the defaults are the shipped configuration):
#   OPT_LEVEL=-O3        C optimization level (-O2, -O3)
#   LTO=full             link-time optimization: full, thin or no
#   WASM_OPT=-O3         binaryen wasm-opt level run over the linked binary, or no
#   PATCHES=all          all: apply patches/*.patch; none: pristine CPython
#   PYMALLOC=yes         yes: --with-pymalloc (pymalloc over wasi-libc's dlmalloc); no: malloc only
#   C_RECURSION_LIMIT=N  Py_C_RECURSION_LIMIT (patch 0002): C recursion units before RecursionError
#   PARSER_MAXSTACK=N    the PEG parser's nesting limit (patch 0004)
#   VARIANT=name         build directory suffix (default: derived from the knobs)
#   SKIP_APT=1           do not touch apt (packages and sources already there)
#   JOBS=N               make -j (default: nproc)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:?usage: build.sh OUT_DIR}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

WORK="${WORK:-/work/cpython-build}"
OPT_LEVEL="${OPT_LEVEL:--O3}"
LTO="${LTO:-full}"
WASM_OPT="${WASM_OPT:--O3}"
PATCHES="${PATCHES:-all}"
PYMALLOC="${PYMALLOC:-yes}"
C_RECURSION_LIMIT="${C_RECURSION_LIMIT:-1600}"
PARSER_MAXSTACK="${PARSER_MAXSTACK:-2000}"
JOBS="${JOBS:-$(nproc)}"
VARIANT="${VARIANT:-o${OPT_LEVEL#-O}-lto${LTO}-p${PATCHES}-pym${PYMALLOC}-cr${C_RECURSION_LIMIT}}"

# Source package versions (Debian trixie / forky / sid). Override to move on.
PY_SRC="${PY_SRC:-python3.13=3.13.15-1}"
ZLIB_SRC="${ZLIB_SRC:-zlib=1:1.3.dfsg+really1.3.1-1}"
BZIP2_SRC="${BZIP2_SRC:-bzip2=1.0.8-6}"
SQLITE_SRC="${SQLITE_SRC:-sqlite3=3.46.1-7+deb13u2}"
PYVER=3.13

LLVM_VER=19
LLVM_BIN="/usr/lib/llvm-${LLVM_VER}/bin"
SYSROOT="$WORK/sysroot"
DEPS="$WORK/deps"
NATIVE_PREFIX="$WORK/native-inst"
BUILD_PY="$NATIVE_PREFIX/bin/python$PYVER"

log() { printf '[build.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# --------------------------------------------------------------------------------------------
# 1. Packages: toolchain from bookworm (clang/lld/llvm 19, compiler-rt for wasm32, binaryen),
#    wasi-libc from bookworm-backports, and deb-src lines for trixie/forky/sid.
# --------------------------------------------------------------------------------------------
setup_apt() {
    local src=/etc/apt/sources.list.d/execr-cpython-wasi.sources
    if [[ ! -f $src ]]; then
        log "adding $src (deb-src trixie/forky/sid, deb bookworm-backports)"
        cat > "$src" <<'EOF'
# Added by execr tools/cpython-wasi/build.sh; safe to delete after the build.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie forky sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "clang-$LLVM_VER" "lld-$LLVM_VER" "llvm-$LLVM_VER" "libclang-rt-$LLVM_VER-dev-wasm32" \
        wasi-libc/bookworm-backports binaryen \
        dpkg-dev build-essential pkg-config tcl xz-utils ca-certificates \
        libssl-dev zlib1g-dev libffi-dev libbz2-dev libsqlite3-dev libexpat1-dev >/dev/null
}

# --------------------------------------------------------------------------------------------
# 2. Sources: apt-get source (verified against the signed Sources index), orig tarballs only.
# --------------------------------------------------------------------------------------------
fetch_sources() {
    mkdir -p "$WORK/src"
    local s
    for s in "$PY_SRC" "$ZLIB_SRC" "$BZIP2_SRC" "$SQLITE_SRC"; do
        local name="${s%%=*}" ver="${s#*=}"
        local upstream="${ver#*:}"; upstream="${upstream%-*}"
        if ! ls "$WORK/src/${name}_${upstream}".orig.tar.* >/dev/null 2>&1; then
            log "apt-get source $s"
            (cd "$WORK/src" && apt-get source --download-only -qq "$s")
        fi
    done
}

orig_tarball() {  # orig_tarball NAME=VERSION -> path of the main orig tarball
    local name="${1%%=*}" ver="${1#*=}"
    local upstream="${ver#*:}"; upstream="${upstream%-*}"
    local f
    for f in "$WORK/src/${name}_${upstream}".orig.tar.*; do
        [[ $f == *-www* ]] || { echo "$f"; return; }
    done
    echo "no orig tarball for $1 in $WORK/src" >&2; return 1
}

unpack() {  # unpack NAME=VERSION DIR (fresh)
    rm -rf "$2"; mkdir -p "$2"
    tar -C "$2" --strip-components=1 -xf "$(orig_tarball "$1")"
}

# --------------------------------------------------------------------------------------------
# 3. The build Python: same major.minor, native (freeze, deepfreeze, sysconfig, .pyc).
# --------------------------------------------------------------------------------------------
build_native_python() {
    [[ -x $BUILD_PY ]] && return
    log "native CPython $PYVER (build Python)"
    unpack "$PY_SRC" "$WORK/native"
    (cd "$WORK/native" && ./configure -q --prefix="$NATIVE_PREFIX" && make -s -j"$JOBS" && make -s install) \
        > "$WORK/native.log" 2>&1
}

# --------------------------------------------------------------------------------------------
# 4. The wasm32 toolchain and the static libraries (zlib, bzip2, sqlite3).
# --------------------------------------------------------------------------------------------
setup_toolchain() {
    # A symlink sysroot keeps /usr/include out of the cross build.
    mkdir -p "$SYSROOT/include" "$SYSROOT/lib"
    ln -sfn /usr/include/wasm32-wasi "$SYSROOT/include/wasm32-wasi"
    ln -sfn /usr/lib/wasm32-wasi "$SYSROOT/lib/wasm32-wasi"
    export CC="$LLVM_BIN/clang --target=wasm32-wasi --sysroot=$SYSROOT"
    export CXX="$LLVM_BIN/clang++ --target=wasm32-wasi --sysroot=$SYSROOT"
    export AR="$LLVM_BIN/llvm-ar" RANLIB="$LLVM_BIN/llvm-ranlib" NM="$LLVM_BIN/llvm-nm"
    export PATH="$LLVM_BIN:$PATH"
}

DEP_CFLAGS="-O2 -DNDEBUG"

build_zlib() {
    [[ -f $DEPS/lib/libz.a ]] && return
    log "zlib (static, wasm32)"
    unpack "$ZLIB_SRC" "$WORK/zlib"
    (cd "$WORK/zlib" && CFLAGS="$DEP_CFLAGS" CHOST=wasm32 ./configure --static --prefix="$DEPS" \
        && make -j"$JOBS" libz.a && make install) > "$WORK/zlib.log" 2>&1
}

build_bzip2() {
    [[ -f $DEPS/lib/libbz2.a ]] && return
    log "bzip2 (static, wasm32)"
    unpack "$BZIP2_SRC" "$WORK/bzip2"
    (
        cd "$WORK/bzip2"
        # shellcheck disable=SC2086
        for f in blocksort huffman crctable randtable compress decompress bzlib; do
            $CC $DEP_CFLAGS -D_FILE_OFFSET_BITS=64 -c "$f.c" -o "$f.o"
        done
        "$AR" rcs libbz2.a ./*.o
        mkdir -p "$DEPS/lib" "$DEPS/include"
        cp libbz2.a "$DEPS/lib/" && cp bzlib.h "$DEPS/include/"
    ) > "$WORK/bzip2.log" 2>&1
}

build_sqlite() {
    [[ -f $DEPS/lib/libsqlite3.a ]] && return
    log "sqlite3 (amalgamation generated natively with tclsh, compiled static for wasm32)"
    unpack "$SQLITE_SRC" "$WORK/sqlite"
    (
        cd "$WORK/sqlite"
        # The amalgamation is generated by host tools (lemon, mkkeywordhash, tclsh).
        env -u CC -u CXX -u AR -u RANLIB -u NM ./configure -q >/dev/null
        env -u CC -u CXX -u AR -u RANLIB -u NM make -j"$JOBS" sqlite3.c
        # WASI has no threads, no dlopen, no mmap-based shared memory (sqlite knows __wasi__).
        # shellcheck disable=SC2086
        $CC $DEP_CFLAGS -D_WASI_EMULATED_SIGNAL -D_WASI_EMULATED_GETPID -D_WASI_EMULATED_MMAN \
            -DSQLITE_THREADSAFE=0 -DSQLITE_OMIT_LOAD_EXTENSION -DSQLITE_OMIT_WAL \
            -DSQLITE_ENABLE_FTS5 -DSQLITE_ENABLE_MATH_FUNCTIONS -DSQLITE_ENABLE_JSON1 \
            -DSQLITE_DEFAULT_MEMSTATUS=0 -DSQLITE_TEMP_STORE=3 \
            -c sqlite3.c -o sqlite3.o
        "$AR" rcs libsqlite3.a sqlite3.o
        mkdir -p "$DEPS/lib" "$DEPS/include"
        cp libsqlite3.a "$DEPS/lib/" && cp sqlite3.h sqlite3ext.h "$DEPS/include/"
    ) > "$WORK/sqlite.log" 2>&1
}

# --------------------------------------------------------------------------------------------
# 5. CPython for wasm32-wasi.
# --------------------------------------------------------------------------------------------
prepare_cpython_source() {  # -> sets CPY_SRC
    CPY_SRC="$WORK/cpython-src-$PATCHES"
    local stamp="$CPY_SRC/.execr-prepared"
    local want
    if [[ $PATCHES == all ]]; then
        want="$(cat "$HERE"/patches/*.patch "$HERE/_execrmodule.c" "$HERE/Setup.local" | sha256sum | cut -c1-16)"
    else
        want="$(cat "$HERE/_execrmodule.c" "$HERE/Setup.local" | sha256sum | cut -c1-16)"
    fi
    if [[ -f $stamp && "$(cat "$stamp")" == "$want" ]]; then return; fi
    log "preparing CPython source in $CPY_SRC (patches: $PATCHES)"
    unpack "$PY_SRC" "$CPY_SRC"
    if [[ $PATCHES == all ]]; then
        local p
        for p in "$HERE"/patches/*.patch; do
            log "  patch $(basename "$p")"
            patch -d "$CPY_SRC" -p1 --quiet < "$p"
        done
    fi
    cp "$HERE/_execrmodule.c" "$CPY_SRC/Modules/_execrmodule.c"
    cp "$HERE/Setup.local" "$CPY_SRC/Modules/Setup.local"
    echo "$want" > "$stamp"
}

build_cpython() {  # -> sets BLD
    BLD="$WORK/build-$VARIANT"
    # Reuse a finished build only if the source, this script and the knobs are unchanged.
    local config
    config="$(cat "$CPY_SRC/.execr-prepared" "${BASH_SOURCE[0]}"; echo "$OPT_LEVEL $LTO $PATCHES $PYMALLOC")"
    config="$(sha256sum <<< "$config" | cut -c1-16) $C_RECURSION_LIMIT $PARSER_MAXSTACK"
    if [[ -f $BLD/python.wasm && -f $BLD/.execr-config && "$(cat "$BLD/.execr-config")" == "$config" ]]; then
        log "reusing $BLD/python.wasm"; return
    fi
    rm -rf "$BLD"; mkdir -p "$BLD"

    local cflags="" ldflags="" conf=()
    # No build-machine paths in the binary (__FILE__ in libmpdec, import.c, ...): same bytes from any $WORK.
    cflags="-ffile-prefix-map=$WORK=/build"
    [[ $PATCHES == all ]] && cflags+=" -DPy_C_RECURSION_LIMIT=$C_RECURSION_LIMIT -DPy_PARSER_MAXSTACK=$PARSER_MAXSTACK"
    case $LTO in
        no) ;;
        full|thin) conf+=("--with-lto=$LTO"); ldflags+=" -Wl,--lto-O${OPT_LEVEL#-O}" ;;
        *) echo "LTO must be full, thin or no" >&2; exit 2 ;;
    esac
    if [[ $PYMALLOC == yes ]]; then conf+=(--with-pymalloc); else conf+=(--without-pymalloc); fi

    # Reproducible __DATE__/__TIME__ (sys.version): the release date of the CPython sources.
    SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(stat -c %Y "$CPY_SRC/Include/patchlevel.h")}"
    export SOURCE_DATE_EPOCH
    log "configure $VARIANT: OPT_LEVEL=$OPT_LEVEL LTO=$LTO PATCHES=$PATCHES PYMALLOC=$PYMALLOC"
    (
        cd "$BLD"
        mkdir -p Modules && cp "$CPY_SRC/Modules/Setup.local" Modules/Setup.local
        # Only our static libraries are visible to pkg-config. configure is run by a relative path,
        # so VPATH (compiled into getpath) holds no build-machine path.
        CONFIG_SITE="$CPY_SRC/Tools/wasm/config.site-wasm32-wasi" \
        PKG_CONFIG_LIBDIR="$DEPS/lib/pkgconfig" PKG_CONFIG_PATH="" \
        ZLIB_CFLAGS="-I$DEPS/include" ZLIB_LIBS="-L$DEPS/lib -lz" \
        BZIP2_CFLAGS="-I$DEPS/include" BZIP2_LIBS="-L$DEPS/lib -lbz2" \
        LIBSQLITE3_CFLAGS="-I$DEPS/include" LIBSQLITE3_LIBS="-L$DEPS/lib -lsqlite3" \
        OPT="-DNDEBUG -fwrapv -g0 $OPT_LEVEL -Wall" \
        CFLAGS="$cflags" LDFLAGS="$ldflags" \
        "$(realpath --relative-to="$BLD" "$CPY_SRC")/configure" -C \
            --host=wasm32-unknown-wasi --build="$("$CPY_SRC/config.guess")" \
            --with-build-python="$BUILD_PY" \
            --disable-test-modules --without-ensurepip \
            "${conf[@]}"
    ) > "$BLD/configure.log" 2>&1
    log "make $VARIANT (log: $BLD/make.log)"
    (cd "$BLD" && make -j"$JOBS" all) > "$BLD/make.log" 2>&1
    echo "$config" > "$BLD/.execr-config"
    # The builtins we promise must really be built in (not "missing" or "disabled").
    local m
    for m in zlib _bz2 _sqlite3 _decimal pyexpat _md5 _sha1 _sha2 _sha3 _blake2 _json _pickle \
             _datetime unicodedata math _random array _struct _execr; do
        if ! grep -q "PyInit_$m(void)" "$BLD/Modules/config.c"; then
            echo "module $m is not built in (see $BLD/make.log)" >&2; exit 1
        fi
    done
}

# --------------------------------------------------------------------------------------------
# 6. Post-link: wasm-opt, the stdlib zip, checksums.
# --------------------------------------------------------------------------------------------
finish_binary() {
    local in="$BLD/python.wasm" out="$OUT/python.wasm"
    if [[ $WASM_OPT == no ]]; then
        # LTO links carry DWARF (configure adds -g to the LTO flags): drop it as wasm-opt would.
        "$LLVM_BIN/llvm-strip" --strip-debug -o "$out" "$in"
    else
        log "wasm-opt $WASM_OPT"
        # --strip-dwarf/--strip-producers: no DWARF, no producers section in the shipped binary;
        # -g keeps the name section (function names in wasmtime's trap backtraces, ~180 KB).
        wasm-opt --strip-dwarf --strip-producers "$WASM_OPT" -g \
            --enable-bulk-memory --enable-sign-ext --enable-mutable-globals --enable-nontrapping-float-to-int \
            "$in" -o "$out"
    fi
}

build_stdlib_zip() {
    local zip="$OUT/python${PYVER/./}.zip"
    log "stdlib zip $(basename "$zip")"
    "$BUILD_PY" "$HERE/make_stdlib_zip.py" \
        --lib "$CPY_SRC/Lib" \
        --sysconfigdata "$(ls -d "$BLD"/build/lib.wasi-wasm32-*)" --replace-prefix "$WORK=/build" \
        --out "$zip"
}

main() {
    mkdir -p "$WORK"
    [[ ${SKIP_APT:-0} == 1 ]] || setup_apt
    fetch_sources
    build_native_python
    setup_toolchain
    build_zlib
    build_bzip2
    build_sqlite
    prepare_cpython_source
    build_cpython
    finish_binary
    build_stdlib_zip
    (cd "$OUT" && sha256sum python.wasm "python${PYVER/./}.zip" > SHA256SUMS)
    log "done: $OUT"
    cat "$OUT/SHA256SUMS" >&2
}

main "$@"
