"""Every Python sample of README.md and docs/ runs as written, against the emulator, so none can go stale.

Each ```python block is written to a file and run in its own interpreter (cwd: a fresh
temporary directory, so files a sample writes go there) with a timeout: it must exit with
status 0 and print no traceback. A sample that cannot run here (the real exchange, a display)
opts out with a first line ``# not run by the tests: <why>``, visible to every reader; the
reason is required and such samples are few. The site itself builds warning-free with
``mkdocs build --strict`` in .ci/run (the ``docs`` extra).
"""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Seconds one sample may take, interpreter start-up under load included (they take one to five).
TIMEOUT = 60.0
#: The first line that opts a sample out, with its reason.
OPT_OUT = re.compile(r"^# not run by the tests: (?P<why>.{20,})$")
#: Opted-out samples allowed in all (keep them rare: each is a sample nobody checks).
MAX_OPT_OUTS = 2
#: A fenced block: its indentation, its info string and its body, up to the closing fence.
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)


def documents():
    """README.md and every Markdown page of docs/, in a stable order."""
    return [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))


def python_blocks(path):
    """(line number, source) of every ```python block of ``path``, dedented as the reader sees it."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        if match["info"].strip() not in ("python", "py", "python3"):
            continue
        indent = match["indent"]
        lines = [line[len(indent):] if line.startswith(indent) else line for line in match["body"].splitlines()]
        blocks.append((text.count("\n", 0, match.start()) + 1, "\n".join(lines) + "\n"))
    return blocks


SAMPLES = [(path, line, source) for path in documents() for line, source in python_blocks(path)]
#: The samples that run (opted-out ones are not collected as tests, and are counted above).
RUNNABLE = [sample for sample in SAMPLES if not sample[2].startswith("# not run")]


def sample_id(sample):
    path, line, _ = sample
    return f"{path.relative_to(ROOT)}:{line}"


class TestCollection:
    def test_the_pages_have_samples(self):
        """The README and the pages are found and hold samples (a broken fence pattern would find none)."""
        names = {path.relative_to(ROOT).as_posix() for path, _, _ in SAMPLES}
        assert {"README.md", "docs/getting-started.md", "docs/market-data.md", "docs/account.md"} <= names
        assert len(RUNNABLE) >= 20

    def test_opt_outs_are_rare_and_say_why(self):
        """At most MAX_OPT_OUTS samples skip the run, and each says why on its first line."""
        skipped = [sample_id(s) for s in SAMPLES if s[2].startswith("# not run")]
        for path, line, source in SAMPLES:
            first = source.splitlines()[0]
            if first.startswith("# not run"):
                assert OPT_OUT.match(first), f"{path.name}:{line}: give the reason: {first!r}"
        assert len(skipped) <= MAX_OPT_OUTS, skipped

    def test_no_sample_hides_in_another_language(self):
        """Code that imports bfxsync is fenced as python (a ```text or unlabelled block would escape the run)."""
        for path in documents():
            for match in FENCE.finditer(path.read_text(encoding="utf-8")):
                if match["info"].strip() not in ("python", "py", "python3"):
                    assert not re.search(r"^\s*(import bfxsync|from bfxsync)", match["body"], re.M), \
                        f"{path.name}: a Python sample fenced as {match['info']!r}"


@pytest.mark.parametrize("sample", RUNNABLE, ids=sample_id)
def test_sample_runs_as_written(sample, tmp_path):
    """The sample runs unchanged in a fresh interpreter against the emulator: status 0, no traceback."""
    path, line, source = sample
    script = tmp_path / "sample.py"
    script.write_text(source, encoding="utf-8")
    try:
        proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                              timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as expired:  # run() has killed and reaped it
        pytest.fail(f"{sample_id(sample)} ran over {TIMEOUT:g} s; output so far: {expired.stdout!r} {expired.stderr!r}")
    where = f"{sample_id(sample)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 0, where
    assert "Traceback" not in proc.stderr and "Exception in thread" not in proc.stderr, where


class TestConfigurationReference:
    """docs/configuration.md is written by hand: these keep it equal to the code."""

    @staticmethod
    def table_rows(heading):
        """The first-column names (in backquotes) of the table under ``heading``, and their rows."""
        text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8").split(heading, 1)[1]
        rows = {}
        for line in text.split("\n## ", 1)[0].splitlines():
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if line.startswith("| `"):
                for name in re.findall(r"`(\w+)`", cells[0]):
                    rows[name] = cells
        return rows

    def test_every_option_is_listed_with_its_default(self):
        """The options table has exactly Config's fields, each with the default the code has."""
        import attrs

        import bfxsync

        rows = self.table_rows("## Options")
        fields = {field.name: field for field in attrs.fields(bfxsync.Config)}
        assert list(rows) == list(fields)
        for name, field in fields.items():
            default = field.default.factory() if isinstance(field.default, attrs.Factory) else field.default
            assert rows[name][1] == f"`{default!r}`", name

    def test_every_counter_is_listed(self, make_client, emulator, tmp_path):
        """Each key of stats() (an authenticated, recording client's) is named in the counters tables."""
        from bfxsync.emulator import DEMO_KEY, DEMO_SECRET

        text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8").split("## Counters", 1)[1]
        client = make_client(emulator.url, api_key=DEMO_KEY, api_secret=DEMO_SECRET, record=str(tmp_path / "r.jsonl"))
        client.wait_authenticated(10)
        missing = [key for key in client.stats() if f"`{key}`" not in text]
        assert missing == []


def test_logging_page_recommends_the_tested_format():
    """The log format docs/logging.md recommends is the one tests/test_logging.py checks every record with."""
    from test_logging import README_FORMAT

    assert f'format="{README_FORMAT}"' in (ROOT / "docs" / "logging.md").read_text(encoding="utf-8")
