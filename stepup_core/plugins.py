"""The plugin manager factory.

``get_plugin_manager()`` adds the hook specs, honours ``STEPUP_DISABLE_PLUGINS`` (a deny-list)
and ``STEPUP_LOAD_PLUGINS`` (an allow-list; set but empty means none), loads each entry point of
the ``stepup`` group on its own (a broken plugin is reported with its name and error while the
rest load), registers the built-ins from ``default_plugins``, and ends with ``check_pending()``
so a misspelt hook fails loudly.

It is also the one plugin host: every hook call goes through ``pm.hook``. Hooks that add things
are called once per implementing plugin (:func:`collect_registrations`), so each registration
is recorded with its owner and a name registered twice is refused naming both plugins; hooks
whose implementations must not stop one another (audit events) are called the same way
(:func:`call_each_plugin`). Both use pluggy's subset callers, so a plugin object must be
hashable (a module, or an instance compared by identity: ``attrs.define(eq=False)``). Hooks on
the request path call their implementations directly (:func:`direct_impls`), exactly as pluggy
would, unless a wrapper or a hook-call monitor needs pluggy's own dispatch.
``STEPUP_TRACE_PLUGINS=1`` prints every hook call, its implementations and its results to
standard error.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import operator
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib.metadata import EntryPoint, entry_points
from pprint import pformat
from typing import Any, Generic, TypeVar

import attrs
import pluggy

from . import hookspecs
from .errors import PluginError
from .hookspecs import hookimpl

log = logging.getLogger("stepup")
T = TypeVar("T")

ENTRY_POINT_GROUP = "stepup"
DEFAULT_PLUGINS = (
    "stepup_core.default_plugins.policy",
    "stepup_core.default_plugins.console_delivery",
    "stepup_core.default_plugins.stores",
    "stepup_core.default_plugins.audit_log",
    "stepup_core.default_plugins.notifications",
)


@attrs.frozen
class PluginLoadFailure:
    name: str
    error: str


class StepUpPluginManager(pluggy.PluginManager):
    """A PluginManager that remembers which entry points failed to load, and knows when its
    hook implementations may be called directly (see :func:`direct_impls`)."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.load_failures: list[PluginLoadFailure] = []
        #: (distribution name, version) of each plugin loaded from an entry point, by plugin name.
        self.distributions: dict[str, tuple[str, str]] = {}
        #: Bumped by every change to the registered implementations: direct callers built
        #: under an older generation are rebuilt.
        self.generation = 0
        #: How many hook-call monitors (tracing) are active: while any is, every call goes
        #: through pluggy, so the monitors see it.
        self.monitors = 0
        self._direct: dict[str, tuple[int, tuple[DirectImpl, ...] | None]] = {}

    def register(self, plugin: Any, name: str | None = None) -> str | None:
        self.generation += 1
        return super().register(plugin, name)

    def unregister(self, plugin: Any = None, name: str | None = None) -> Any:
        self.generation += 1
        return super().unregister(plugin, name)

    def add_hookspecs(self, module_or_class: Any) -> None:
        self.generation += 1
        super().add_hookspecs(module_or_class)

    def add_hookcall_monitoring(self, before: Any, after: Any) -> Callable[[], None]:
        undo = super().add_hookcall_monitoring(before, after)
        self.monitors += 1
        undone = False

        def stop() -> None:
            nonlocal undone
            undo()
            if not undone:
                undone = True
                self.monitors -= 1

        return stop


def _arguments_getter(argnames: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """A function picking the values of ``argnames``, in order, out of a call's keyword arguments."""
    if len(argnames) == 1:
        name = argnames[0]
        return lambda kwargs: (kwargs[name],)
    if not argnames:
        return lambda kwargs: ()
    return operator.itemgetter(*argnames)


@attrs.frozen
class DirectImpl:
    """One hook implementation, called as pluggy would call it: ``function`` with the
    arguments named ``argnames``."""

    owner: str
    function: Callable[..., Any]
    argnames: tuple[str, ...]
    _arguments: Callable[[Mapping[str, Any]], tuple[Any, ...]] = attrs.field(
        init=False, repr=False, eq=False, default=attrs.Factory(lambda self: _arguments_getter(self.argnames), True)
    )

    def __call__(self, kwargs: Mapping[str, Any]) -> Any:
        return self.function(*self._arguments(kwargs))


def direct_impls(pm: pluggy.PluginManager, hook_name: str) -> tuple[DirectImpl, ...] | None:
    """The implementations of ``hook_name`` in registration order (pluggy calls them in the
    reverse), to call one by one without pluggy's dispatch, or None when that would not be
    what pluggy does: a manager other than :class:`StepUpPluginManager`, a hook-call monitor
    (``STEPUP_TRACE_PLUGINS``, pluggy's tracing) active, or a wrapper among the
    implementations. Hooks on the request path (``stepup_check``, ``stepup_event``) use this:
    pluggy's dispatch costs several times the work of the built-in implementations."""
    if not isinstance(pm, StepUpPluginManager) or pm.monitors:
        return None
    cached = pm._direct.get(hook_name)
    if cached is not None and cached[0] == pm.generation:
        return cached[1]
    impls = getattr(pm.hook, hook_name).get_hookimpls()
    direct: tuple[DirectImpl, ...] | None = None
    if not any(impl.hookwrapper or impl.wrapper for impl in impls):
        direct = tuple(DirectImpl(impl.plugin_name, impl.function, tuple(impl.argnames)) for impl in impls)
    pm._direct[hook_name] = (pm.generation, direct)
    return direct


def call_hook(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> list[Any]:
    """``pm.hook.<hook_name>(**kwargs)`` for a hook that is not ``firstresult``: the answers
    that are not None, in pluggy's call order; the first exception propagates."""
    direct = direct_impls(pm, hook_name)
    if direct is None:
        results: list[Any] = getattr(pm.hook, hook_name)(**kwargs)
        return results
    answers = []
    for impl in reversed(direct):
        answer = impl(kwargs)
        if answer is not None:
            answers.append(answer)
    return answers


def _names_from_env(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


def _stepup_entry_points() -> list[EntryPoint]:
    return list(entry_points(group=ENTRY_POINT_GROUP))


def load_entry_points(pm: StepUpPluginManager) -> None:
    allowed = _names_from_env("STEPUP_LOAD_PLUGINS")
    denied = _names_from_env("STEPUP_DISABLE_PLUGINS") or set()
    for ep in _stepup_entry_points():
        if ep.name in denied or (allowed is not None and ep.name not in allowed):
            pm.set_blocked(ep.name)
            continue
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
            if ep.dist is not None:
                pm.distributions[ep.name] = (ep.dist.metadata["Name"], ep.dist.version)
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not stop the rest
            failure = PluginLoadFailure(name=ep.name, error=f"{type(exc).__name__}: {exc}")
            pm.load_failures.append(failure)
            log.error("stepup plugin %r failed to load and is skipped: %s", ep.name, failure.error)


def get_plugin_manager(load_entrypoints: bool = True) -> StepUpPluginManager:
    pm = StepUpPluginManager()
    pm.add_hookspecs(hookspecs)
    if load_entrypoints:
        load_entry_points(pm)
    for module_name in DEFAULT_PLUGINS:
        module = importlib.import_module(module_name)
        if pm.get_plugin(module_name) is None:
            pm.register(module, name=module_name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"a plugin implements an unknown hook: {exc}") from exc
    if os.environ.get("STEPUP_TRACE_PLUGINS"):
        trace_hook_calls(pm)
    return pm


def method_hooks(verifier_factory: str, client_method: str) -> tuple[Callable[..., None], Callable[..., None]]:
    """The two hook implementations of a method plugin, importing its halves only when called.

    :param verifier_factory: ``"package.module:name"`` of ``name(config) -> Verifier``.
    :param client_method: ``"package.module:name"`` of the client half's class (built with no
        arguments).

    In a plugin's ``plugin.py``, which must stay cheap to import::

        stepup_register_verifiers, stepup_register_client_methods = method_hooks(
            "stepup_totp.verifier:make_verifier", "stepup_totp.client:TotpClientMethod"
        )
    """

    @hookimpl
    def stepup_register_verifiers(register: Callable[[Any], None], config: Any) -> None:
        register(_load(verifier_factory)(config))

    @hookimpl
    def stepup_register_client_methods(register: Callable[[Any], None]) -> None:
        register(_load(client_method)())

    return stepup_register_verifiers, stepup_register_client_methods


def _load(reference: str) -> Any:
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def trace_hook_calls(pm: pluggy.PluginManager) -> Callable[[], None]:
    """Print each hook call, its implementations and its results to standard error (what
    ``STEPUP_TRACE_PLUGINS=1`` turns on). Returns the callable that stops tracing."""

    def before(hook_name: str, hook_impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]) -> None:
        print(f"\n{hook_name}:", file=sys.stderr)
        print(pformat(kwargs, width=100, indent=4), file=sys.stderr)
        print("implementations:", [impl.plugin_name for impl in hook_impls], file=sys.stderr)

    def after(
        outcome: pluggy.Result[Any], hook_name: str, hook_impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]
    ) -> None:
        if outcome.exception is not None:
            print(f"{hook_name} raised: {outcome.exception!r}", file=sys.stderr)
        else:
            print("results:", pformat(outcome.get_result(), width=100, indent=4), file=sys.stderr)

    return pm.add_hookcall_monitoring(before, after)


# Kept on the plugin manager, by hook: the implementations the narrowed callers were built for,
# and those callers. A hook on the request path (``stepup_event`` for each grant used) reuses them until a
# plugin is registered or unregistered.
_NARROWED = "_stepup_narrowed"


def each_plugin(pm: pluggy.PluginManager, hook_name: str) -> Iterator[tuple[str, Any]]:
    """``(plugin name, caller)`` for each plugin implementing ``hook_name``, where ``caller``
    is ``pm.hook.<hook_name>`` narrowed to that one plugin (wrappers and tracing still apply)."""
    hook = getattr(pm.hook, hook_name)
    impls = tuple(hook.get_hookimpls())
    narrowed: dict[str, tuple[tuple[Any, ...], list[tuple[str, Any]]]] = pm.__dict__.setdefault(_NARROWED, {})
    cached = narrowed.get(hook_name)
    same = cached is not None and len(cached[0]) == len(impls)
    if cached is not None and same and all(built is impl for built, impl in zip(cached[0], impls, strict=True)):
        return iter(cached[1])
    callers = []
    for impl in impls:
        others = [other.plugin for other in impls if other is not impl]
        callers.append((impl.plugin_name, pm.subset_hook_caller(hook_name, remove_plugins=others)))
    narrowed[hook_name] = (impls, callers)
    return iter(callers)


class Registrations(Generic[T]):
    """What a ``register`` hook added, by name, with the plugin that added each."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.items: dict[str, T] = {}
        self.owners: dict[str, str] = {}

    def add(self, name: str, item: T, owner: str) -> None:
        if name in self.items:
            raise PluginError(f"{self.what} {name!r} is registered by both {self.owners[name]!r} and {owner!r}")
        self.items[name] = item
        self.owners[name] = owner


def collect_registrations(
    pm: pluggy.PluginManager,
    hook_name: str,
    what: str,
    entry: Callable[..., tuple[str, T]],
    **kwargs: Any,
) -> Registrations[T]:
    """Call a hook that takes a ``register`` callback, once per implementing plugin.

    ``entry`` turns the arguments of one ``register`` call into ``(name, item)``; a name
    registered twice is a :class:`PluginError` naming both plugins. ``kwargs`` are the hook's
    other arguments.
    """
    found: Registrations[T] = Registrations(what)
    for owner, caller in each_plugin(pm, hook_name):

        def register(*args: Any, _owner: str = owner) -> None:
            name, item = entry(*args)
            found.add(name, item, _owner)

        caller(register=register, **kwargs)
    return found


async def settle(owner: str, hook: str, result: Any) -> None:
    """Await one plugin's answer from :func:`call_each_plugin` to a hook that only observes;
    its failure is logged, never raised."""
    try:
        if isinstance(result, BaseException):
            raise result
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("%s implementation %s failed", hook, owner)


async def await_in_order(results: Sequence[Any]) -> None:
    """Await a hook's answers in pluggy's call order; after a failure the rest are closed unrun."""
    pending = [r for r in results if inspect.isawaitable(r)]
    while pending:
        awaitable = pending.pop(0)
        try:
            await awaitable
        except BaseException:
            for rest in pending:
                close = getattr(rest, "close", None)
                if close is not None:
                    close()
            raise


def call_each_plugin(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> Iterator[tuple[str, Any]]:
    """Call ``hook_name`` plugin by plugin: ``(plugin name, result)``, where a plugin that
    raised gives its exception as the result, so one failing plugin cannot silence the rest."""
    direct = direct_impls(pm, hook_name)
    if direct is not None:
        for impl in direct:
            try:
                result = impl(kwargs)
            except Exception as exc:  # noqa: BLE001 - handed to the caller, which decides
                yield impl.owner, exc
                continue
            if result is not None:
                yield impl.owner, result
        return
    for owner, caller in each_plugin(pm, hook_name):
        try:
            results = caller(**kwargs)
        except Exception as exc:  # noqa: BLE001 - handed to the caller, which decides
            yield owner, exc
            continue
        for result in results:
            yield owner, result


def plugin_distribution(pm: pluggy.PluginManager, plugin: Any) -> tuple[str | None, str | None]:
    """(distribution name, version) of a registered plugin, when it came from an entry point."""
    for dist_plugin, dist in pm.list_plugin_distinfo():
        if dist_plugin is plugin:
            return dist.project_name, dist.version
    distributions: dict[str, tuple[str, str]] = getattr(pm, "distributions", {})
    known = distributions.get(pm.get_name(plugin) or "")
    if known is not None:
        return known
    return None, None


def describe_plugins(pm: pluggy.PluginManager, include_builtin: bool = False) -> list[dict[str, Any]]:
    """Name, version and hooks of each plugin: what ``stepup plugins`` prints."""
    rows = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: str(item[0])):
        if plugin is None:
            continue
        builtin = str(name).startswith("stepup_core.")
        if builtin and not include_builtin:
            continue
        dist, version = plugin_distribution(pm, plugin)
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        rows.append({"name": name, "package": dist, "version": version, "hooks": hooks})
    return rows
