#!/usr/bin/env bash
# Kaldi-style option parsing for recipes: `--some-name VALUE` sets the shell
# variable `some_name`, which the script must already define (with its default).
# Source it after the defaults:  . ../../bin/parse_options.sh
# `--help` prints the variables a script accepts, with their current values.

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
  printf -v "$__name" '%s' "$__value"
done
unset __name __value
