# The toolkit and bin/ on PATH; site-specific additions (modules, CUDA) go here.
. "$(dirname "${BASH_SOURCE[0]}")/../../bin/path.sh"
