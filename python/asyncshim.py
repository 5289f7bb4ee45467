"""Spans and requests for the asyncshim profiler, from Python.

    import asyncshim

    with asyncshim.request("GET /a#17"):
        with asyncshim.span("query") as s:
            s.set("rows", 12)
            ...

    @asyncshim.span("render")          # sync and async functions alike
    async def render(page): ...

Standard library only (ctypes).  When the process does not run under the
shim (LD_PRELOAD=.../libasyncshim.so), every call is a no-op.

Spans nest per thread and per asyncio task: the current span lives in a
contextvars.ContextVar, which each thread and each asyncio task has its own
copy of, so a span begun in a task and suspended across an await stays that
task's parent for what it does next.  The shim gets explicit span ids
(asyncshim_span_open/close in include/asyncshim.h), so it never has to guess
which task is running.

Blocking calls are attributed to the span and request current on their
thread: entering and leaving a span tells the shim, and so does asyncio
each time it runs a step of a task (or any callback) in that task's context
— the module wraps asyncio.events.Handle._run for that when the shim is
loaded, so a blocking call in a task is attributed to that task's span even
when other tasks entered spans meanwhile.  The shim is told only when the
span changes.  Event loops that do not run callbacks through asyncio's
Handle (uvloop) do not get this: there the last span entered or left counts.

A span from Python costs far more than one from C (each enter and exit is a
few ctypes calls): the module times its own work and adds it to the shim's
estimate of what it cost (asyncshim_overhead), now and then and at exit.
"""
import asyncio.events
import atexit
import contextvars
import ctypes
import functools
import inspect
import threading
import time

__all__ = ["span", "request", "enabled"]

KIND_SPAN = 0
KIND_REQUEST = 1


def _load():
    try:
        lib = ctypes.CDLL(None)
        lib.asyncshim_span_open.restype = ctypes.c_uint64
        lib.asyncshim_span_open.argtypes = [ctypes.c_char_p, ctypes.c_uint64, ctypes.c_int]
        lib.asyncshim_span_close.restype = None
        lib.asyncshim_span_close.argtypes = [ctypes.c_uint64]
        lib.asyncshim_span_meta_int.restype = None
        lib.asyncshim_span_meta_int.argtypes = [ctypes.c_uint64, ctypes.c_char_p, ctypes.c_longlong]
        lib.asyncshim_span_meta_str.restype = None
        lib.asyncshim_span_meta_str.argtypes = [ctypes.c_uint64, ctypes.c_char_p, ctypes.c_char_p]
        lib.asyncshim_attribute.restype = None
        lib.asyncshim_attribute.argtypes = [ctypes.c_uint64, ctypes.c_uint64]
        try:
            lib.asyncshim_overhead.restype = None
            lib.asyncshim_overhead.argtypes = [ctypes.c_uint64]
        except AttributeError:
            lib.asyncshim_overhead = None      # an older shim: not told
        return lib
    except (OSError, AttributeError):
        return None


_lib = _load()

# (innermost span or request id, innermost span id, innermost request id)
_current = contextvars.ContextVar("asyncshim_current", default=(0, 0, 0))


_told = threading.local()      # what the shim was last told on this thread
_cost = threading.local()      # ns this thread spent in this module, not told yet
_TELL_NS = 100_000             # tell the shim every ~100 us of cost (~50 spans)


def _spent(t0):
    """This thread spent the time since t0 (perf_counter_ns) in the module."""
    ns = getattr(_cost, "ns", 0) + time.perf_counter_ns() - t0
    if ns < _TELL_NS or _lib.asyncshim_overhead is None:
        _cost.ns = ns
        return
    t1 = time.perf_counter_ns()
    _lib.asyncshim_overhead(ns)
    _cost.ns = time.perf_counter_ns() - t1     # telling costs too


def _tell_rest():
    ns = getattr(_cost, "ns", 0)
    if ns and _lib is not None and _lib.asyncshim_overhead is not None:
        _cost.ns = 0
        _lib.asyncshim_overhead(ns)


def _attribute(span_id, request_id):
    if getattr(_told, "v", None) != (span_id, request_id):
        _told.v = (span_id, request_id)
        _lib.asyncshim_attribute(span_id, request_id)


def _wrap_handles():
    """Each asyncio callback (a task's step) runs in its context: tell the
    shim that context's span before it runs."""
    run = asyncio.events.Handle._run

    def _run(self):
        ctx = getattr(self, "_context", None)
        cur = ctx.get(_current, (0, 0, 0)) if ctx is not None else (0, 0, 0)
        _attribute(cur[1], cur[2])
        return run(self)

    asyncio.events.Handle._run = _run


if _lib is not None:
    _wrap_handles()
    atexit.register(_tell_rest)


def enabled():
    """True when the shim is loaded in this process."""
    return _lib is not None


def _bytes(s):
    return s if isinstance(s, bytes) else str(s).encode("utf-8", "replace")


class span:
    """A span: a context manager, or a decorator for functions and coroutines."""

    _kind = KIND_SPAN

    def __init__(self, name):
        t0 = time.perf_counter_ns() if _lib is not None else 0
        self.name = name
        self._id = 0
        self._token = None
        self._outer = None
        self._made_ns = time.perf_counter_ns() - t0 if t0 else 0

    def __enter__(self):
        if _lib is None:
            return self
        t0 = time.perf_counter_ns()
        outer = _current.get()
        self._outer = outer
        self._id = _lib.asyncshim_span_open(_bytes(self.name), outer[0], self._kind)
        if self._id:
            if self._kind == KIND_REQUEST:
                now = (self._id, 0, self._id)
            else:
                now = (self._id, self._id, outer[2])
            self._token = _current.set(now)
            _attribute(now[1], now[2])
        _spent(t0 - self._made_ns)
        self._made_ns = 0
        return self

    def __exit__(self, *exc):
        if self._id:
            t0 = time.perf_counter_ns()
            _lib.asyncshim_span_close(self._id)
            _current.reset(self._token)
            _attribute(self._outer[1], self._outer[2])
            self._id = 0
            _spent(t0)
        return False

    def set(self, key, value):
        """Metadata on this span: an int or a string (others become strings)."""
        if not self._id:
            return
        if isinstance(value, int) and not isinstance(value, bool) and -2**63 <= value < 2**63:
            _lib.asyncshim_span_meta_int(self._id, _bytes(key), value)
        else:
            _lib.asyncshim_span_meta_str(self._id, _bytes(key), _bytes(value))

    def __call__(self, fn):
        cls, name = type(self), self.name
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def wrapped_async(*a, **kw):
                with cls(name):
                    return await fn(*a, **kw)
            return wrapped_async

        @functools.wraps(fn)
        def wrapped(*a, **kw):
            with cls(name):
                return fn(*a, **kw)
        return wrapped


class request(span):
    """A request: its id names it; blocking calls and spans inside it are
    reported per request."""

    _kind = KIND_REQUEST
