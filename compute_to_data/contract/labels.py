"""The labels file: one class name per line, in the order of the model's outputs.

Shared by the engine (which refuses a bad file when the task is submitted, before anything is
written to the catalog) and the notebook (which reads the staged copy), so both agree on what a
class name is. A name listed twice would give two of the model's outputs the same name: the
images of one class would silently be tagged with the other's, so it is refused.
"""

from __future__ import annotations

from compute_to_data.domain.errors import ConfigError

#: a labels file is a few KB; anything far larger is not one (read at most this much)
MAX_LABELS_BYTES = 4 * 1024 * 1024


def parse_labels(text: str, source: str) -> list[str]:
    """Class names, in order (blank lines and surrounding spaces ignored); ConfigError naming
    ``source`` when there are none or one appears twice."""
    labels: list[str] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        name = line.strip()
        if not name:
            continue
        if name in first_line:
            raise ConfigError(
                f"labels file {source}: class {name!r} is listed twice (lines {first_line[name]} and {number}); "
                "each line names the class of one model output, so every name must differ"
            )
        first_line[name] = number
        labels.append(name)
    if not labels:
        raise ConfigError(f"labels file {source} holds no class names (one per line)")
    return labels


def decode_labels(data: bytes, source: str) -> list[str]:
    """:func:`parse_labels` of a file's bytes (UTF-8)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"labels file {source} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    return parse_labels(text, source)
