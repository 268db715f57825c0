"""Nox sessions: tests, lint and the real-data benchmark.

Each session installs the exact CI versions from requirements-ci.txt, then kdbench itself.
"""

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True


def _install(session: nox.Session) -> None:
    session.install("-r", "requirements-ci.txt")
    session.install("--no-deps", "-e", ".")


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """Run the test suite (extra arguments go to pytest)."""
    _install(session)
    session.run("pytest", "-q", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """Check style and common errors with ruff."""
    session.install("ruff==0.17.6")
    session.run("ruff", "check", "kdbench", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "kdbench", "tests", "benchmarks", "noxfile.py")


@nox.session(python="3.11")
def benchmark(session: nox.Session) -> None:
    """Run the chd68 real-data benchmark into results/chd68 (pass a folder to write elsewhere)."""
    _install(session)
    out = session.posargs[0] if session.posargs else "results/chd68"
    session.run("bash", "benchmarks/run_chd68.sh", out, external=True)
