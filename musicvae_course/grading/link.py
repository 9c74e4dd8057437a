"""Requests from grader-side tests to one student kernel: calls and fetches as plain data (used by :mod:`.judge`).

A failure of this channel (the kernel died or stopped answering, a call ran past the time limit, what came back is
not plain data) fails the case it happened in even when the test's own code catches it: a test that checks that a
function raises (``try: f(bad) except Exception: pass else: raise AssertionError``) passed for a function that
looped past its time limit or returned an object that cannot travel (round 9). :attr:`KernelLink.failure` keeps it.
"""

from __future__ import annotations

import builtins
import json
import time

from . import codec


class KernelLost(RuntimeError):
    """The kernel died or stopped answering during a call (the caller restarts it)."""


class CallTimeout(RuntimeError):
    """A call into the kernel ran past the question's time limit and was interrupted."""


class NotPlainData(RuntimeError):
    """What came back from the kernel is not plain data (the message names the type)."""


class KernelLink:
    """Requests from grader-side tests to one student kernel, with the question's deadline."""

    def __init__(self, kernel, deadline: float, budget: float):
        self.kernel, self.deadline, self.budget = kernel, deadline, budget
        #: the first channel failure since the caller last cleared it: it fails the case whatever the test caught
        self.failure: BaseException | None = None

    def _failed(self, exc: BaseException) -> BaseException:
        if self.failure is None:
            self.failure = exc
        return exc

    def _ask(self, expression: str):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise CallTimeout(f"the time limit of {self.budget:g} s for this question was used up")
        reply = self.kernel.execute("", left, user_expressions={"r": expression}, silent=True)
        status = reply.get("status")
        if status in ("dead", "hung"):
            raise KernelLost("the kernel died" if status == "dead" else "the kernel stopped answering")
        if status == "timeout":
            raise CallTimeout(f"did not finish within the {self.budget:g} s time limit (an endless loop?)")
        entry = reply.get("user_expressions", {}).get("r", {})
        if entry.get("status") != "ok":
            if entry.get("ename") == "KeyboardInterrupt":
                raise CallTimeout(f"did not finish within the {self.budget:g} s time limit (an endless loop?)")
            raise NotPlainData(
                f"the grader's helper in your kernel failed ({str(entry.get('ename'))[:80]}: "
                f"{str(entry.get('evalue'))[:300]})"
            )
        try:
            raw = entry["data"]["text/plain"]
            if len(raw) > 2 * codec.MAX_TEXT + 2:  # the repr of a str at most doubles it (escaped backslashes)
                raise ValueError("too big")
            text = codec.read_repr(raw)
        except (KeyError, TypeError, ValueError):  # DecodeError is a ValueError
            raise NotPlainData("the answer from your kernel was not readable") from None
        if type(text) is not str or len(text) > codec.MAX_TEXT:
            raise NotPlainData("the answer from your kernel was not readable (or too big)")
        return text

    def _describe(self, names) -> dict:
        if not names:
            return {}
        answer = self._ask(f"_mvc_grader.describe({sorted(names)!r})")
        if type(answer) is not str:
            raise NotPlainData("the grader's helper in your kernel was replaced")
        try:
            kinds = codec.loads(answer)
        except ValueError:
            kinds = {}
        kinds = kinds if type(kinds) is dict else {}
        return {n: kinds.get(n) if kinds.get(n) in ("callable", "value", "missing") else "missing" for n in names}

    def _result(self, what: str, answer):
        if type(answer) is not str:
            raise NotPlainData("the grader's helper in your kernel was replaced")
        try:
            node = codec.loads(answer)
        except codec.DecodeError as exc:
            raise NotPlainData(f"the answer from your kernel was refused: {exc}") from None
        if type(node) is not dict or len(node) != 1:
            raise NotPlainData("the answer from your kernel was not readable")
        if "raised" in node:
            info = node["raised"]
            if type(info) is not dict:
                raise NotPlainData("the answer from your kernel was not readable")
            raise student_exception(what, str(info.get("type", "Exception"))[:80], str(info.get("message", ""))[:2000])
        if "ok" not in node:
            raise NotPlainData("the answer from your kernel was not readable")
        try:
            value = codec.decode(json.dumps(node["ok"]))
        except codec.DecodeError as exc:
            raise NotPlainData(f"{what} gave a value the grader refused: {exc}") from None
        if _has_foreign(value):
            raise NotPlainData(f"{what} gave {codec.describe_type(_has_foreign(value))}; expected plain data")
        return value

    def _fetch(self, name: str):
        return self._result(name, self._ask(f"_mvc_grader.fetch({name!r})"))

    def _call(self, name: str, args, kwargs, refs):
        try:
            request = json.dumps(
                {
                    "name": name,
                    "args": json.loads(codec.encode(list(args), refs)),
                    "kwargs": json.loads(codec.encode(dict(kwargs), refs)),
                }
            )
        except TypeError as exc:
            raise TypeError(f"calling {name}: {exc}") from None
        return self._result(name, self._ask(f"_mvc_grader.call({request!r})"))

    def describe(self, names) -> dict:
        """``{name: "callable" | "value" | "missing"}`` of the names in the kernel."""
        return self._recorded(self._describe, names)

    def fetch(self, name: str):
        """The value bound to ``name`` in the kernel, as plain data (NotPlainData when it is not)."""
        return self._recorded(self._fetch, name)

    def call(self, name: str, args, kwargs, refs):
        """Call the kernel's ``name`` with copies of ``args`` and ``kwargs`` (``refs``: objects sent by name); its
        result as plain data, or the exception it raised re-made grader-side (:func:`student_exception`)."""
        return self._recorded(self._call, name, args, kwargs, refs)

    def _recorded(self, method, *args):
        try:
            return method(*args)
        except (KernelLost, CallTimeout, NotPlainData) as exc:
            raise self._failed(exc)


def _has_foreign(value):
    if isinstance(value, codec.Foreign):
        return value
    if type(value) in (list, tuple):
        return next((f for f in map(_has_foreign, value) if f is not None), None)
    if type(value) is dict:
        return next((f for f in map(_has_foreign, value.values()) if f is not None), None)
    return None


# A StopIteration out of a function that map(), filter() or zip() calls ends them quietly: all(map(is_even, xs))
# would be True, and the test passed, whatever the function computes. Re-raised as a StudentError, it fails the case.
STOP_ITERATION = (StopIteration, StopAsyncIteration)


def student_exception(function: str, type_name: str, message: str) -> BaseException:
    """The exception a student's function raised, re-made grader-side: the same builtin class when there is one
    (so ``except ValueError`` in a test works), tagged with the function's name for the feedback."""
    cls = getattr(builtins, type_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)) or issubclass(cls, STOP_ITERATION):
        cls = StudentError
    try:
        exc = cls(message)
    except Exception:  # builtin exceptions with required arguments (UnicodeDecodeError)
        exc = StudentError(message)
    exc._mvc_origin = (function, type_name)
    return exc


class StudentError(Exception):
    """An exception of a class the grader does not have, raised by student code."""


class _Proxy:
    def __init__(self, name, link, refs):
        self._name, self._link, self._refs = name, link, refs

    def __call__(self, *args, **kwargs):
        return self._link.call(self._name, args, kwargs, self._refs)

    def __repr__(self):
        return f"<your function {self._name}>"
