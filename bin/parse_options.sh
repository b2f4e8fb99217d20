#!/usr/bin/env bash
# Kaldi-style option parsing for recipes: `--some-name VALUE` sets the shell
# variable `some_name`, which the script must already define (with its default).
# Source it after the defaults:  . ../../bin/parse_options.sh
# `--help` prints the variables a script accepts, with their current values.
# As Kaldi's utils/parse_options.sh: an option whose default is `true` or `false`
# takes only `true` or `false` (so `--resume True` is refused, not run as a command);
# beyond Kaldi, one whose default is a whole number takes only whole numbers (so
# `--stage 2x` is refused rather than skipping every stage).

while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      echo "usage: $0 [--name value]..."
      echo "options (current values):"
      for __name in ${__recipe_options:-}; do
        printf '  --%s %s\n' "${__name//_/-}" "${!__name}"
      done
      exit 0 ;;
    --*=*)
      __name="${1%%=*}"; __value="${1#*=}"; shift ;;
    --*)
      if [ $# -lt 2 ]; then echo "$0: option $1 needs a value" >&2; exit 1; fi
      __name="$1"; __value="$2"; shift 2 ;;
    *)
      break ;;
  esac
  __name="${__name#--}"; __name="${__name//-/_}"
  if ! declare -p "$__name" >/dev/null 2>&1; then
    echo "$0: unknown option --${__name//_/-}" >&2
    exit 1
  fi
  case "${!__name}" in
    true|false)
      case "$__value" in
        true|false) ;;
        *) echo "$0: option --${__name//_/-} takes true or false, not '$__value'" >&2; exit 1 ;;
      esac ;;
    ''|*[!0-9-]*|-|*?-*) ;;
    *)
      if ! [[ "$__value" =~ ^-?[0-9]+$ ]]; then
        echo "$0: option --${__name//_/-} takes a whole number, not '$__value'" >&2; exit 1
      fi ;;
  esac
  printf -v "$__name" '%s' "$__value"
done
unset __name __value

# require_dir_name VALUE WHAT: VALUE names one directory (not empty, no `/`, not `.` or
# `..`), so `rm -rf "$exp/$VALUE"` cannot reach outside $exp.
require_dir_name() {
  case "$1" in
    ''|.|..|*/*) echo "$0: $2 '$1' must name one directory (not empty, no '/', not '.' or '..')" >&2; exit 1 ;;
  esac
}

# keep_or_clear DIR...: the recipes' one rule for what a run made. Nothing is deleted unless
# the recipe was given `--overwrite true` (its variable `overwrite`), which removes each DIR
# first. Otherwise the directories stay, and the recipes train with `--resume`: a stopped
# training (a cluster's time limit, a crash) continues from its last checkpoint, and a
# finished one only writes its final.pt again.
keep_or_clear() {
  if [ "${overwrite:-false}" = true ]; then
    rm -rf -- "$@"
  fi
}
