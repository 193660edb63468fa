"""Generate the schema tables of docs/protocol.md from the registered message types.

``python -m schemas.doc`` rewrites the generated block in docs/protocol.md; a
unit test fails when the document and the code disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path

from schemas._base import META_TYPE, META_VERSION, TENSOR_DATA, TENSOR_NAMES, TENSOR_SHAPES
from schemas.codec import MESSAGE_TYPES
from schemas.limits import Bound, TensorBound

BEGIN = "<!-- BEGIN GENERATED SCHEMAS (python -m schemas.doc) -->"
END = "<!-- END GENERATED SCHEMAS -->"
DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


def _limits(cls: type) -> dict[str, str]:
    """Column name -> its limit as text (schemas.limits), for the columns that have one."""
    out: dict[str, str] = {}
    for name, b in cls.LIMITS.items():  # type: ignore[attr-defined]
        if isinstance(b, TensorBound):
            out[TENSOR_NAMES] = Bound(max_items=b.max_tensors, max_bytes=b.name_bytes).describe()
            out[TENSOR_SHAPES] = f"≤ {b.max_tensors:,} items, each ≤ {b.max_rank} dims"
            out[TENSOR_DATA] = f"≤ {b.max_elements:,} floats"
        else:
            out[name] = b.describe()
    return out


def schema_tables() -> str:
    """Markdown: one table per message type (field, Arrow type, nullable, limit)."""
    out: list[str] = []
    for name in sorted(MESSAGE_TYPES):
        cls = MESSAGE_TYPES[name]
        meta = cls.ARROW_SCHEMA.metadata
        out.append(
            f"### {name}\n\n`{META_TYPE.decode()}` = `{meta[META_TYPE].decode()}`, "
            f"`{META_VERSION.decode()}` = `{meta[META_VERSION].decode()}`\n"
        )
        limits = _limits(cls)
        out.append("| column | Arrow type | nullable | limit |\n|---|---|---|---|")
        for f in cls.ARROW_SCHEMA:
            nullable = "yes" if f.nullable else "no"
            out.append(f"| `{f.name}` | `{f.type}` | {nullable} | {limits.get(f.name, '')} |")
        out.append("")
    return "\n".join(out)


def render(text: str) -> str:
    """``text`` with its generated block replaced by the current tables."""
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n\n{schema_tables()}\n{END}{tail}"


def main() -> int:
    """Rewrite the generated block of docs/protocol.md in place."""
    DOC.write_text(render(DOC.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
