"""Shared test settings: the count of generated cases the fuzz suites tried (``test_fuzz.py``)."""

FUZZ_CASES: dict[str, int] = {}


def pytest_terminal_summary(terminalreporter):
    if FUZZ_CASES:
        counts = ", ".join(f"{name} {n}" for name, n in FUZZ_CASES.items())
        terminalreporter.write_line(f"generated cases tried: {counts} ({sum(FUZZ_CASES.values())} in all)")
