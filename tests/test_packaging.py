"""Packaging facts that drift silently: floors, the CI's copy of the README commands, metadata files."""
import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setup_cfg():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config


def requirements(text):
    """{name: floor} of the ``name>=floor`` (or ``name>=floor,<bound``) lines of a setup.cfg requirement list."""
    return dict(re.findall(r"^\s*([A-Za-z0-9_.-]+)>=([\w.]+)(?:,<[\w.]+)?\s*$", text, re.M))


def readme_commands():
    """The two set-up commands of the README (the lines after the numbered comments)."""
    section = (ROOT / "README.md").read_text().split("## Set-up on a fresh machine", 1)[1]
    return re.findall(r"^# [12]\. .*\n(.+)$", section, re.M)


class TestFloors:
    def test_lowest_constraints_pin_the_declared_floors(self):
        """.ci/lowest-constraints.txt pins exactly the floors setup.cfg declares (install_requires and extras)."""
        def release(version):  # "22.2.0" and "22.2" are the same floor; "1.6.*" pins the 1.6 floor
            return re.sub(r"(\.0)+$", "", version.replace(".*", ""))

        config = setup_cfg()
        floors = requirements(config["options"]["install_requires"] + config["options.extras_require"]["emulator"])
        pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([\w.*]+)$", (ROOT / ".ci" / "lowest-constraints.txt").read_text(), re.M))
        assert {name: release(pin) for name, pin in pins.items()} == {name: release(v) for name, v in floors.items()}

    def test_websocket_client_major_version_is_bounded(self):
        """The batch framer leans on websocket-client internals: its next major release is not accepted unseen."""
        assert "websocket-client>=1.6,<2" in setup_cfg()["options"]["install_requires"].split()

    def test_websockets_floor_is_15_in_every_extra(self):
        """websockets 13 and 14 cannot run the emulator: every extra that pulls it in asks for 15.0 or later."""
        extras = setup_cfg()["options.extras_require"]
        assert {name: requirements(extras[name]).get("websockets") for name in ("emulator", "test")} == \
            {"emulator": "15.0", "test": "15.0"}


class TestSetUpCommands:
    def test_both_commands_use_a_virtual_environment(self):
        """On Debian 12 there is no `python` and no system pip: each command makes and enters a venv first."""
        commands = readme_commands()
        assert len(commands) == 2
        for command in commands:
            assert command.startswith("python3 -m venv .venv && . .venv/bin/activate && "), command

    def test_ci_runs_the_readme_test_command_verbatim(self):
        """.ci/run runs command 2 exactly as the README prints it."""
        assert readme_commands()[1] in (ROOT / ".ci" / "run").read_text()


class TestMetadata:
    def test_license_changelog_and_urls(self):
        """The MIT licence is shipped and named, the changelog exists, and the project URLs point at the repository."""
        metadata = setup_cfg()["metadata"]
        assert metadata["license"] == "MIT" and metadata["license_files"].strip() == "LICENSE"
        assert (ROOT / "LICENSE").read_text().startswith("MIT License\n\nCopyright (c) ")
        assert "the bfxsync developers" in (ROOT / "LICENSE").read_text()
        assert "## [Unreleased]" in (ROOT / "CHANGELOG.md").read_text()
        urls = dict(line.split(" = ", 1) for line in metadata["project_urls"].strip().splitlines())
        assert set(urls) >= {"Documentation", "Source", "Changelog"}
        assert all(url.startswith("https://github.com/bfxsync/bfxsync") for url in urls.values())
