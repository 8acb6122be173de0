"""How every benchmark reports: ``ratio ...`` result lines and the ``--smoke`` help. No heavy imports here: the
data-scale benchmark measures its processes' memory after imports."""

SMOKE_HELP = "smallest size, one round: checks that the benchmark runs (seconds), measures nothing worth quoting"


def ratio(label: str, value: float, detail: str = "") -> None:
    """A result line: ``ratio <what>: <value>x [detail]`` (the form tests/test_bench.py looks for)."""
    print(f"ratio {label}: {value:.3f}x{'  ' + detail if detail else ''}")
