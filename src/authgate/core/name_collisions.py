"""Whether a client that named itself carries the name of an operator's app: a warning on the
consent page (DESIGN.md §7). Names are compared as a person reads them: case-insensitively,
after Unicode NFKC normalisation, as confusable skeletons (UTS #39), letters and digits only.
"""

from __future__ import annotations

import unicodedata

from authgate.core import (
    confusables,
)
from authgate.core.context import Context
from authgate.core.models import (
    App,
)


def _comparable(name: str) -> str:
    # Letters and digits only: "Acme  Console", "Acme\u200bConsole" and "Acme-Console" read
    # as "Acme Console" to a person, so they must compare equal to it too; and letters of
    # other scripts that look the same ("Acmе" with a Cyrillic е) as the letters they look
    # like (UTS #39 skeletons, which tell case apart: taken before and after case folding,
    # so "CIaude" with a capital I is "claude", and so is "CLAUDE").
    shown = confusables.skeleton(unicodedata.normalize("NFKC", name)).casefold()
    return "".join(c for c in confusables.skeleton(shown).casefold() if c.isalnum())


def name_collides(ctx: Context, app: App) -> bool:
    """Whether a client that named itself (dynamically registered, or a metadata document)
    carries the name of an app an operator registered — worth a warning on the consent page.
    Compared case-insensitively after Unicode NFKC normalisation, as confusable skeletons
    (UTS #39), letters and digits only; never true for an operator's own apps."""
    if not (app.dynamically_registered or app.metadata_document):
        return False
    name = _comparable(app.name)
    return any(
        other.id != app.id
        and not other.dynamically_registered
        and not other.metadata_document
        and _comparable(other.name) == name
        for other in ctx.store.list_apps()
    )
