#!/usr/bin/env bash
# Fetch real PDFs for the loader tests (crates/memory/tests/real_pdfs.rs) from Debian's archive:
# the GLPK manuals in glpk-doc (6 PDFs, about 500 pages in English, Spanish and Portuguese, typeset
# with TeX; a 1.5 MB package). They land in "$cache/pdfs/glpk-doc/" (cache defaults to
# ~/.cache/corral, override with CORRAL_CACHE); tests read them from there, or from
# CORRAL_TEST_PDFS. Already present: nothing is done, so the script is idempotent.
#
# Needs apt-get and dpkg-deb (Debian or Ubuntu). apt-get download needs no root; when the package
# lists are missing and we are root, they are fetched with apt-get update.
set -euo pipefail

PACKAGE=glpk-doc
VERSION=5.0-1   # Debian 12; another version is taken with a warning if this one is gone
FILES=(cnfsat.pdf glpk.pdf gmpl.pdf gmpl_es.pdf gmpl_pt-BR.pdf graphs.pdf)

cache="${CORRAL_CACHE:-$HOME/.cache/corral}"
dest="$cache/pdfs/$PACKAGE"

present=1
for f in "${FILES[@]}"; do
    [[ -s "$dest/$f" ]] || present=0
done
if [[ $present == 1 ]]; then
    echo "skip: $dest/ (already present)"
    exit 0
fi

for tool in apt-get apt-cache dpkg-deb; do
    command -v "$tool" >/dev/null || { echo "error: $tool is needed to fetch $PACKAGE" >&2; exit 1; }
done

candidate() { apt-cache policy "$PACKAGE" 2>/dev/null | awk '/Candidate:/ { print $2 }'; }
if [[ -z "$(candidate)" || "$(candidate)" == "(none)" ]]; then
    if [[ "$(id -u)" == 0 ]]; then
        apt-get update -qq
    else
        echo "error: apt knows no $PACKAGE; run 'apt-get update' as root first" >&2
        exit 1
    fi
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/corral-pdfs.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download -qq "$PACKAGE=$VERSION" 2>/dev/null; then
    echo "warning: $PACKAGE $VERSION is not available; taking $(candidate)" >&2
    apt-get download -qq "$PACKAGE"
fi
dpkg-deb -x "$PACKAGE"_*.deb root

mkdir -p "$dest.tmp"
for f in "${FILES[@]}"; do
    cp "root/usr/share/doc/$PACKAGE/$f" "$dest.tmp/$f"
done
rm -rf "$dest"
mv "$dest.tmp" "$dest"
echo "pdfs: $dest/ (${#FILES[@]} files from $(ls "$PACKAGE"_*.deb))"
