#!/usr/bin/env bash
# Checks the API's contract: `buf lint` with the rules buf.yaml names, then
# `buf breaking` against the proto as it was before its latest change.
#
# The latest change is the working tree's, when proto/ differs from HEAD; else, on
# a branch, its commits since the main line; else the last commit that changed
# proto/. A breaking change passes only when it is
# declared: the commit's message carries a `Breaking-Change: <what>` line and the
# commit adds to CHANGELOG.md what a client must do (for a change not committed
# yet: CHANGELOG.md changed beside it).
#
# Installs buf (the npm package @bufbuild/buf) into .tools/ (or $JOBQUEUE_TOOLS)
# when missing.
#
# Under pipefail, `grep -q` would end a pipe early and fail its writer with
# SIGPIPE; the greps below read all their input instead.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

buf_version=1.75.0
tools="${JOBQUEUE_TOOLS:-$repo/.tools}/node"
buf="$tools/node_modules/.bin/buf"
if [ ! -x "$buf" ] || [ "$("$buf" --version)" != "$buf_version" ]; then
  echo "installing buf $buf_version into $tools"
  mkdir -p "$tools"
  npm install --silent --no-audit --no-fund --prefix "$tools" "@bufbuild/buf@$buf_version" >/dev/null
fi

echo "buf lint"
"$buf" lint proto

if ! git rev-parse --verify -q HEAD >/dev/null; then
  echo "buf breaking: no commit to compare with"
  exit 0
fi
# A branch is compared with where it left the main line (origin/main, or the
# commit JOBQUEUE_PROTO_BASE names), so that each of its proto changes counts.
base="${JOBQUEUE_PROTO_BASE:-}"
if [ -z "$base" ] && git rev-parse -q --verify origin/main >/dev/null; then
  base="$(git merge-base HEAD origin/main)"
  [ "$base" = "$(git rev-parse HEAD)" ] && base=""
fi
# The contract: the .proto files and buf's rules (not this script).
contract=('proto/*.proto' proto/buf.yaml)
if [ -n "$(git status --porcelain -- "${contract[@]}")" ]; then
  change="the working tree"
  against="HEAD"
  changelog_changed() { [ -n "$(git status --porcelain -- CHANGELOG.md)" ]; }
  declared() { true; }
elif [ -n "$base" ]; then
  change="the commits since ${base:0:12}"
  against="$base"
  changelog_changed() { git diff --quiet "$base" HEAD -- CHANGELOG.md && return 1 || return 0; }
  declared() { git log --format=%B "$base..HEAD" | grep '^Breaking-Change: .' >/dev/null; }
else
  last="$(git log -1 --format=%H -- "${contract[@]}")"
  if ! git rev-parse --verify -q "$last^" >/dev/null; then
    echo "buf breaking: proto/ has had no change since it was added"
    exit 0
  fi
  change="commit ${last:0:12}"
  against="$last^"
  changelog_changed() { git diff --quiet "$last^" "$last" -- CHANGELOG.md && return 1 || return 0; }
  declared() { git log -1 --format=%B "$last" | grep '^Breaking-Change: .' >/dev/null; }
fi

echo "buf breaking: $change against $(git rev-parse --short=12 "$against")"
if report="$("$buf" breaking proto --against "$repo/.git#ref=$(git rev-parse "$against"),subdir=proto" 2>&1)"; then
  echo "no breaking change"
  exit 0
fi
echo "$report"
if declared && changelog_changed; then
  echo "the breaking changes above are declared (Breaking-Change, CHANGELOG.md): accepted"
  exit 0
fi
cat >&2 <<EOF
$change breaks the API's contract (above). If that is meant, declare it: a
"Breaking-Change: <what>" line in the commit message and, in CHANGELOG.md,
what a client must do.
EOF
exit 1
