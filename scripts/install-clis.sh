#!/usr/bin/env bash
# Install the pinned, genuine AI coding CLIs that clinvk's real-CLI tests run.
#
#   scripts/install-clis.sh [claude|codex|gemini ...]     (default: all three)
#
# Each CLI goes into its own npm prefix under ${CLINVK_CLI_PREFIX:-$HOME/.cache/clinvk-clis}
# (<prefix>/<name>/node_modules/...) and gets a symlink in <prefix>/bin. A CLI whose
# `--version` already reports the pinned version is skipped, so the script is idempotent.
# Needs node >= 20 and npm; no sudo. The claude package's postinstall must run (it links the
# native binary), so install scripts are explicitly enabled.
set -euo pipefail

PREFIX="${CLINVK_CLI_PREFIX:-$HOME/.cache/clinvk-clis}"
declare -A PKG=(
  [claude]="@anthropic-ai/claude-code@2.1.330"
  [codex]="@openai/codex@0.169.0"
  [gemini]="@google/gemini-cli@0.61.0"
)

die() { echo "install-clis: $*" >&2; exit 1; }
command -v npm >/dev/null || die "npm not found (need node >= 20 and npm)"

# installed_ok NAME VERSION: true if the prefix's binary prints VERSION for --version.
installed_ok() {
  local bin="$PREFIX/$1/node_modules/.bin/$1"
  [ -x "$bin" ] || return 1
  local out
  out="$("$bin" --version </dev/null 2>/dev/null)" || return 1
  [[ " $out " == *[!0-9.]"$2"[!0-9.]* ]]
}

names=("$@")
[ ${#names[@]} -gt 0 ] || names=(claude codex gemini)
mkdir -p "$PREFIX/bin"

for name in "${names[@]}"; do
  spec="${PKG[$name]:-}"
  [ -n "$spec" ] || die "unknown CLI '$name' (choose from: ${!PKG[*]})"
  version="${spec##*@}"
  dir="$PREFIX/$name"
  if installed_ok "$name" "$version"; then
    echo "$name $version already installed"
  else
    echo "installing $spec into $dir ..."
    mkdir -p "$dir"
    [ -f "$dir/package.json" ] || echo '{"private": true}' >"$dir/package.json"
    # --ignore-scripts=false: claude's postinstall links its native binary over bin/claude.exe.
    # The EBADENGINE warning of claude-code on node < 22 is expected and harmless.
    npm install --prefix "$dir" --no-audit --no-fund --no-save --ignore-scripts=false \
      --loglevel=error "$spec"
    installed_ok "$name" "$version" \
      || die "$name: '$dir/node_modules/.bin/$name --version' does not report $version"
    echo "$name $version installed"
  fi
  ln -sfn "$dir/node_modules/.bin/$name" "$PREFIX/bin/$name"
done

echo
echo "binaries (add to PATH with: export PATH=\"$PREFIX/bin:\$PATH\"):"
for name in "${names[@]}"; do
  echo "  $name: $PREFIX/bin/$name -> $(readlink -f "$PREFIX/bin/$name")"
done
