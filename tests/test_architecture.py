"""The import rules of docs/architecture.md, read from every module's imports (those inside functions too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "spkverif"

NOUNS = {"frontends", "models", "losses", "backends", "runtime", "metrics", "plots", "config"}
ALLOWED: dict[str, set[str]] = {
    "base": set(),
    "io": {"base"},
    "frontends": {"base", "io"},
    "losses": {"base", "io"},
    "metrics": {"base", "io"},
    "backends": {"base", "io", "metrics"},
    "models": {"base", "io", "frontends"},
    "runtime": {"base", "io", "frontends", "models", "backends"},
    "plots": {"base", "io", "metrics", "frontends", "models"},
    "config": {"base", "io", "models"},
    "training": {"base", "io", *NOUNS},
    "stages": {"base", "io", *NOUNS, "training"},
    "cli": {"base", "io", *NOUNS, "training", "stages"},
    "__main__": {"cli"},
    "spkverif": set(),
}
"""Room -> the rooms it may import besides itself. A room is a package or module directly under
spkverif/ (`spkverif` itself: its __init__, which holds the version)."""


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    return found


def _room(module: str) -> str:
    """spkverif.stages.score -> stages; spkverif.metrics -> metrics; spkverif -> spkverif."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "spkverif"


def _imports(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, module imported) of every import in the file: absolute, relative and inside functions;
    `from spkverif.x import y` counts as importing spkverif.x.y when that is a module."""
    names = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            names.append((node.lineno, base))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                if _is_module(candidate):
                    names.append((node.lineno, candidate))
    return names


def _is_module(name: str) -> bool:
    if not name.startswith("spkverif."):
        return False
    relative = Path(*name.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").is_file() or (PACKAGE / relative / "__init__.py").is_file()


MODULES = _modules()


def test_every_room_is_in_the_table() -> None:
    assert {_room(module) for module, _ in MODULES} <= set(ALLOWED)


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[module for module, _ in MODULES])
def test_imports_follow_the_layers(module: str, path: Path) -> None:
    room = _room(module)
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {room} imports {name} ({_room(name)})"
        for line, name in _imports(module, path)
        if (name == "spkverif" or name.startswith("spkverif."))
        and _room(name) != room
        and _room(name) not in ALLOWED[room]
        and name != "spkverif"  # the package itself: its __init__ holds the version alone
    ]
    assert not wrong, "imports against docs/architecture.md:\n" + "\n".join(wrong)


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[module for module, _ in MODULES])
def test_only_the_cli_imports_click(module: str, path: Path) -> None:
    if _room(module) == "cli":
        return
    clicks = [line for line, name in _imports(module, path) if name == "click" or name.startswith("click.")]
    assert not clicks, f"{path.relative_to(PACKAGE.parent)} imports Click (lines {clicks}): only spkverif/cli/ may"


def test_the_rules_catch_an_import_against_them(tmp_path: Path) -> None:
    """The checker itself: an upward import inside a function, and a relative one, are seen."""
    source = tmp_path / "fake.py"
    source.write_text("def f():\n    from spkverif.stages import score\nfrom ..cli import options\n")
    found = [name for _, name in _imports("spkverif.models.fake", source)]
    assert "spkverif.stages.score" in found and "spkverif.cli.options" in found
    assert {_room(name) for name in found} - ALLOWED["models"] - {"models"} == {"stages", "cli"}
