"""The tiny check harness the Python client programs share.

Each program builds a `Checks` and registers its checks in order with the `check`
decorator, which runs the check at once:

    checks = Checks("psycopg3")

    @checks.check("connect")
    def _():
        ...

A passed check prints `ok   <program>: <name>`. A failed one prints
`FAIL <program>: <name>: <exception>` and, unless TESSERA_KEEP_GOING=1, ends the program
with exit code 1 right there. `finish()` prints `<program>: N passed, N failed` and exits
non-zero if anything failed. Comparisons raise AssertionError explicitly (never `assert`,
which `python -O` strips), so every check can fail.
"""
import inspect
import os
import sys
import traceback

HOST = "127.0.0.1"


def port():
    value = os.environ.get("TESSERA_PORT")
    if not value:
        sys.exit("TESSERA_PORT is not set: export TESSERA_PORT=<port of a running tessera server>")
    try:
        return int(value)
    except ValueError:
        sys.exit(f"TESSERA_PORT={value!r} is not a port number")


PORT = port()
# The password of role tessera (TESSERA_ADMIN_PASSWORD of the server's first start, or
# the content of <data dir>/admin-password).
PASSWORD = os.environ.get("TESSERA_PASSWORD", "")
KEEP_GOING = os.environ.get("TESSERA_KEEP_GOING") == "1"
VERBOSE = os.environ.get("TESSERA_VERBOSE") == "1"


class CheckFailed(AssertionError):
    pass


def fail(message):
    raise CheckFailed(message)


def eq(actual, expected, what):
    """Fail unless actual == expected (and, for bool/int, of the same type)."""
    if actual != expected or type(actual) is not type(expected):
        fail(f"{what}: expected {expected!r} ({type(expected).__name__}), got {actual!r} ({type(actual).__name__})")


def true(cond, what):
    if not cond:
        fail(what)


def raises(exc_type, fn, what):
    """Run fn; fail unless it raises exc_type. Returns the exception."""
    try:
        fn()
    except exc_type as e:
        return e
    except Exception as e:  # a different error is a failure, reported with its type
        fail(f"{what}: expected {exc_type.__module__}.{exc_type.__name__}, got {type(e).__module__}.{type(e).__name__}: {e}")
    fail(f"{what}: expected {exc_type.__name__}, but no error was raised")


async def araises(exc_type, coro, what):
    try:
        await coro
    except exc_type as e:
        return e
    except Exception as e:
        fail(f"{what}: expected {exc_type.__module__}.{exc_type.__name__}, got {type(e).__module__}.{type(e).__name__}: {e}")
    fail(f"{what}: expected {exc_type.__name__}, but no error was raised")


class Checks:
    def __init__(self, program, before_each=None):
        self.program = program
        self.passed = 0
        self.failed = []
        # Run before every check, e.g. to roll back what a failed check left open, so
        # that with TESSERA_KEEP_GOING=1 one failure does not cascade into the next.
        self.before_each = before_each

    def _report_failure(self, name, e):
        msg = f"{type(e).__module__}.{type(e).__name__}: {e}" if not isinstance(e, CheckFailed) else str(e)
        msg = " ".join(msg.split())  # one line
        if len(msg) > 700 and not VERBOSE:
            msg = msg[:700] + " ... (TESSERA_VERBOSE=1 shows all)"
        print(f"FAIL {self.program}: {name}: {msg}", flush=True)
        if VERBOSE:
            traceback.print_exc()
        self.failed.append(name)
        if not KEEP_GOING:
            self.finish()

    def check(self, name):
        """Decorator: run the function now as the check `name`."""

        def run(fn):
            try:
                if self.before_each:
                    self.before_each()
                fn()
            except Exception as e:
                self._report_failure(name, e)
            else:
                self.passed += 1
                print(f"ok   {self.program}: {name}", flush=True)
            return fn

        return run

    def acheck(self, loop, name):
        """Decorator for an async check, run to completion on `loop`."""

        def run(fn):
            try:
                if self.before_each:
                    r = self.before_each()
                    if inspect.isawaitable(r):
                        loop.run_until_complete(r)
                loop.run_until_complete(fn())
            except Exception as e:
                self._report_failure(name, e)
            else:
                self.passed += 1
                print(f"ok   {self.program}: {name}", flush=True)
            return fn

        return run

    def finish(self):
        print(f"{self.program}: {self.passed} passed, {len(self.failed)} failed", flush=True)
        if self.failed:
            print(f"{self.program}: FAILED: {', '.join(self.failed)}", flush=True)
        sys.exit(1 if self.failed else 0)
