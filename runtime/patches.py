"""Work-arounds for the GraphQL libraries, applied once when the schema is built.

Strawberry builds every extension hook afresh for every streamed result: for each event of
each subscription, `on_stream_result`'s generator is wrapped in a new
`contextlib.contextmanager` (8 % of a fan-out delivery's CPU, bench/conversations.py).
A hook depends only on its extension instance and the hook's name, and extensions are made
per operation, so each extension keeps the hooks it was asked for here.

Library internals it relies on: strawberry-graphql 0.341.2's
`strawberry.extensions.context.ExtensionContextManagerBase.get_hook` and its `HOOK_NAME`
(replaced on the class). Check after an upgrade that the method still exists with that
signature, and whether the new release still rebuilds hooks per result.

(graphql-core 3.3.2's per-event executor leak — a cache shared with the subscription's
executor — is avoided where runtime/execution.py builds per-event executors.)
"""

from __future__ import annotations

from typing import Any

from strawberry.extensions.context import ExtensionContextManagerBase

_original_get_hook = ExtensionContextManagerBase.get_hook
_HOOKS = "_parley_hooks"


def _get_hook(self: ExtensionContextManagerBase, extension: Any) -> Any:
    hooks = extension.__dict__.setdefault(_HOOKS, {})
    try:
        return hooks[self.HOOK_NAME]
    except KeyError:
        hook = hooks[self.HOOK_NAME] = _original_get_hook(self, extension)
        return hook


def apply() -> None:
    ExtensionContextManagerBase.get_hook = _get_hook  # type: ignore[method-assign]
