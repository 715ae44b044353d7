#!/usr/bin/env bash
# Install the MCP reference servers the tests talk to, from npm, into "$cache/mcp" (cache defaults
# to ~/.cache/corral, override with CORRAL_CACHE). Needs Node 18+ and npm.
#   - @modelcontextprotocol/server-everything : stdio and streamable-HTTP reference server
#     (crates/tools/tests/mcp.rs; started as `node <entry> stdio|streamableHttp`)
# A package already installed at its pinned version is skipped, so the script is idempotent and
# prints nothing then.
set -euo pipefail

# Pinned package versions (the top level; npm resolves their dependencies).
EVERYTHING_VERSION=2026.8.31

cache="${CORRAL_CACHE:-$HOME/.cache/corral}"
prefix="$cache/mcp"

command -v node >/dev/null || { echo "error: node is not on PATH (Node 18 or later is needed)" >&2; exit 1; }
command -v npm >/dev/null || { echo "error: npm is not on PATH" >&2; exit 1; }

# installed_version <package>  -> prints the version installed under $prefix, or nothing
installed_version() {
    local manifest="$prefix/node_modules/$1/package.json"
    [[ -f "$manifest" ]] || return 0
    node -e 'process.stdout.write(require(process.argv[1]).version)' "$manifest"
}

# install <package> <version> <entry, relative to the package>
install() {
    local package="$1" version="$2" entry="$prefix/node_modules/$1/$3"
    if [[ "$(installed_version "$package")" == "$version" && -f "$entry" ]]; then
        return
    fi
    mkdir -p "$prefix"
    echo "installing $package@$version into $prefix" >&2
    npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error --save-exact \
        "$package@$version" >&2
    [[ "$(installed_version "$package")" == "$version" && -f "$entry" ]] \
        || { echo "error: $package@$version did not install to $entry" >&2; exit 1; }
    echo "installed $package@$version: $entry"
}

install @modelcontextprotocol/server-everything "$EVERYTHING_VERSION" dist/index.js
