"""The one way the package reads YAML: safe types only, no aliases, every error in one line naming the file.

PyYAML's `safe_load` builds an alias as a reference to the anchored value, so nine nested
aliases of nine items each ("billion laughs") parse at once into 9^9 references, and whatever
walks the result next (validation, a copy, an error message that prints it) never finishes:
`run-bag` and `evaluate` hung on such a params file. The loader here refuses an alias where it
stands, before anything is built. ROS 2's own params parser (rcl_yaml_param_parser) refuses
aliases too, so a params file the node can read never needs one; rig, training and ablation
files write values out as well.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml


class YamlFileError(yaml.YAMLError):
    """A YAML text that cannot be read: one line naming the file (or the text's source), where, and why."""


class NoAliasLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses aliases (`*name`), which can expand exponentially, where they appear."""

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise YamlFileError(
                f"{_where(self.name, event.start_mark)}: the alias *{event.anchor} is refused: YAML aliases can expand "
                "into billions of values ('billion laughs') and ROS 2 params files do not allow them either; write "
                "the value out"
            )
        return super().compose_node(parent, index)


def _where(source: str, mark: yaml.Mark | None) -> str:
    return f"{source}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else source


def parse_yaml(text: str, source: str) -> Any:  # noqa: ANN401 - whatever the document holds
    """The document in `text` (plain Python values), or YamlFileError naming `source`, the line and the problem."""
    loader = NoAliasLoader(text)
    loader.name = source  # what PyYAML's marks name instead of "<unicode string>"
    try:
        return loader.get_single_data()
    except YamlFileError:
        raise
    except yaml.MarkedYAMLError as error:
        problem = ": ".join(part for part in (error.context, error.problem) if part)
        raise YamlFileError(
            f"{_where(source, error.problem_mark or error.context_mark)}: not valid YAML: {problem}"
        ) from None
    except yaml.YAMLError as error:
        raise YamlFileError(f"{source}: not valid YAML: {' '.join(str(error).split())}") from None
    except RecursionError:
        raise YamlFileError(f"{source}: not valid YAML: nested too deeply to read") from None
    finally:
        loader.dispose()


def load_yaml(path: str | os.PathLike) -> Any:  # noqa: ANN401 - whatever the document holds
    """The YAML file at `path` read with `parse_yaml`; FileNotFoundError when it is absent."""
    return parse_yaml(Path(path).read_text(), str(path))
