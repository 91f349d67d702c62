"""YAML configs that build on another one (override files).

A config may name a base config, relative to its own file::

    base_config: ../train.yaml
    gate: none
    gate_conf: !delete

The effective config is the base (resolved the same way, so an override may sit on another
override) deep-merged with the file's other keys: mappings merge key by key; lists and scalars
replace; a key set to null is null. ``key: !delete`` (at any depth) leaves the key out of the
result, e.g. the options of a component that the override turns off.

``ConfigArgumentParser`` is ESPnet's ``config_argparse.ArgumentParser`` whose ``--config`` resolves
the bases, so training, ``--print_config`` and the ``config.yaml`` ESPnet writes into the exp dir all
see the merged config.
"""

import copy
import difflib
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import yaml
from espnet2.utils import config_argparse

BASE_KEY = "base_config"


class ConfigError(ValueError):
    """A config file that cannot be resolved; the message names the file and the fix."""


class _Delete:
    def __repr__(self) -> str:
        return "!delete"


DELETE = _Delete()


class _Loader(yaml.SafeLoader):
    """yaml.SafeLoader with the ``!delete`` tag."""


def _construct_delete(loader: yaml.Loader, node: yaml.Node) -> _Delete:
    if not isinstance(node, yaml.ScalarNode) or loader.construct_scalar(node) != "":
        raise yaml.constructor.ConstructorError(None, None, "!delete takes no value", node.start_mark)
    return DELETE


_Loader.add_constructor("!delete", _construct_delete)


def _plain(value: Any, where: str) -> Any:
    """``value`` with its ``!delete`` keys left out (a new value: nothing below it to merge with)."""
    if value is DELETE:  # merge() handles it as a key's value, so this is a list item
        raise ConfigError(f"{where}: !delete leaves out a key of a mapping; it cannot be a list item")
    if isinstance(value, dict):
        return merge({}, value, where)
    if isinstance(value, list):
        return [_plain(v, where) for v in value]
    return copy.deepcopy(value)


def merge(base: Dict[str, Any], override: Dict[str, Any], where: str = "config") -> Dict[str, Any]:
    """``base`` deep-merged with ``override`` (neither is changed): mappings merge key by key, other
    values replace; ``!delete`` removes a key."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is DELETE:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value, where)
        else:
            out[key] = _plain(value, where)
    return out


def _read(path: Path) -> Dict[str, Any]:
    try:
        with path.open("r", encoding="utf-8") as f:
            data = yaml.load(f, Loader=_Loader)  # noqa: S506 (a SafeLoader with one tag)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} must hold a YAML mapping of options (key: value lines), not {type(data).__name__}"
        )
    return data


def load_config(path: Union[str, Path], _chain: Sequence[Path] = ()) -> Dict[str, Any]:
    """The effective config of ``path``: its bases resolved and merged, tags applied."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    real = path.resolve()
    if real in _chain:
        cycle = " -> ".join(str(p) for p in [*_chain, real])
        raise ConfigError(f"{path}: its {BASE_KEY} chain comes back to itself ({cycle}); remove one {BASE_KEY}")
    data = _read(path)
    base_name = data.pop(BASE_KEY, None)
    if base_name is None:
        return merge({}, data, where)
    if not isinstance(base_name, str):
        raise ConfigError(f"{path}: {BASE_KEY} must be one path (relative to this file), not {base_name!r}")
    base_path = path.parent / base_name
    if not base_path.is_file():
        raise ConfigError(f"{path}: {BASE_KEY} '{base_name}' not found (looked for {base_path}: "
                          f"the path is relative to the file that names it)")
    return merge(load_config(base_path, [*_chain, real]), data, where)


def _unknown_message(unknown: List[str], known: Sequence[str]) -> str:
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1)
        hints.append(f"{key} (did you mean {close[0]}?)" if close else key)
    return (f"unknown option(s) {', '.join(hints)}; fix or remove them "
            "(--print_config lists every option)")


class ConfigArgumentParser(config_argparse.ArgumentParser):
    """ESPnet's config parser whose ``--config`` may be an override file (``base_config``)."""

    def parse_known_args(self, args: Optional[List[str]] = None, namespace=None):
        # As ESPnet's parser does: read --config first; its keys become defaults, the command line wins.
        plain = super(config_argparse.ArgumentParser, self).parse_known_args  # argparse's own
        known, _ = plain(args, namespace)
        if known.config is not None:
            try:
                conf = load_config(known.config)
            except ConfigError as e:  # one line, not argparse's usage screen
                self.exit(2, f"{self.prog}: error: {e}\n")
            dests = {action.dest for action in self._actions}
            unknown = [key for key in conf if key not in dests]
            if unknown:
                self.exit(2, f"{self.prog}: error: {known.config}: {_unknown_message(unknown, dests)}\n")
            self.set_defaults(**conf)
        return plain(args, namespace)


def with_base_configs(parser: config_argparse.ArgumentParser) -> ConfigArgumentParser:
    """``parser`` (built by ESPnet's ``AbsTask.get_parser``), now resolving ``base_config`` in ``--config``."""
    parser.__class__ = ConfigArgumentParser
    return parser
