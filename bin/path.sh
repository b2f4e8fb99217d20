# Put the toolkit on PATH for a recipe (sourced by recipes/*/path.sh): the
# repository's virtualenv if `make` built one, else whatever `spkverif` is
# already installed; and bin/, the shared shell helpers.
__root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -x "$__root/.venv/bin/spkverif" ]; then
  export PATH="$__root/.venv/bin:$PATH"
fi
export PATH="$__root/bin:$PATH"
unset __root
if ! command -v spkverif >/dev/null; then
  echo "spkverif is not installed: run 'make demo' (or 'pip install -e .') at the repository root" >&2
  exit 1
fi
