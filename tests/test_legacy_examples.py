"""examples/tk_book.py for real: a Tk window on a virtual X display (Xvfb), screenshot included.

The test starts its own Xvfb (``-displayfd`` picks a free display number), runs the example
against the emulator, waits until the example reports a synced, checksum-verified book in
its window, finds the window by title with ``xwininfo``, grabs it with ``xwd`` and checks the
picture is a real rendering (decoded here, no imaging library). It skips only where it
cannot work: no tkinter in this Python, or no Xvfb/xwd/xwininfo; ``.ci/run`` installs
them and sets BFXSYNC_REQUIRE_GUI=1, which turns those skips into failures.

Set BFXSYNC_SCREENSHOT=path/to/file.png to keep the screenshot (docs/tk_book.png is made so).
"""
import importlib.util
import os
import queue
import re
import shutil
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

from test_cli import Interruptible, child_env
from test_examples import float_artefacts, unexpected_stderr

ROOT = Path(__file__).resolve().parents[1]
TITLE = "bfxsync tBTCUSD order book"
TIMEOUT = 30.0


def require(condition, reason):
    """Skip when the GUI test cannot run here; fail instead when CI says it must."""
    if condition:
        return
    if os.environ.get("BFXSYNC_REQUIRE_GUI") == "1":
        pytest.fail(f"BFXSYNC_REQUIRE_GUI=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture
def display():
    """A fresh Xvfb on a free display number; yields ":N" and stops the server afterwards."""
    require(importlib.util.find_spec("_tkinter") is not None,
            f"tkinter is not available in {sys.executable} (Debian: apt-get install python3-tk)")
    missing = [tool for tool in ("Xvfb", "xwd", "xwininfo") if shutil.which(tool) is None]
    require(not missing, f"missing {', '.join(missing)} (Debian: apt-get install xvfb x11-apps x11-utils)")
    read_end, write_end = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
                            pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.close(write_end)
    try:
        with os.fdopen(read_end) as pipe:
            number = pipe.readline().strip()  # Xvfb writes the display number once it accepts clients
        assert number.isdigit(), f"Xvfb did not start: {xvfb.stderr.read().decode(errors='replace')[-2000:]}"
        yield f":{number}"
    finally:
        xvfb.terminate()
        xvfb.wait(10)


def read_xwd(data):
    """(width, height, RGB bytes) of an ``xwd`` dump in a 32-bit TrueColor visual (Xvfb's 24-bit depth)."""
    fields = struct.unpack(">25I", data[:100])
    header_size, width, height, byte_order, bits_per_pixel, bytes_per_line = (
        fields[0], fields[4], fields[5], fields[7], fields[11], fields[12])
    masks, ncolors = fields[14:17], fields[19]
    assert bits_per_pixel == 32, f"unexpected {bits_per_pixel} bits per pixel"
    pixels = data[header_size + 12 * ncolors:]
    rgb = bytearray(width * height * 3)
    for channel, mask in enumerate(masks):  # the byte holding each channel follows from its mask
        byte = (mask.bit_length() - 8) // 8
        offset = byte if byte_order == 0 else 3 - byte
        for y in range(height):
            row = pixels[y * bytes_per_line: y * bytes_per_line + 4 * width]
            rgb[(y * width) * 3 + channel: (y + 1) * width * 3: 3] = row[offset::4]
    return width, height, bytes(rgb)


def write_png(path, width, height, rgb):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    rows = b"".join(b"\0" + rgb[y * width * 3: (y + 1) * width * 3] for y in range(height))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def test_tk_book_shows_a_verified_book_in_a_real_window(display, tmp_path):
    """The window opens, shows both sides of a synced book with passing checksums, and closes after --seconds."""
    env = dict(os.environ, DISPLAY=display)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.Popen([sys.executable, str(ROOT / "examples" / "tk_book.py"), "--emulator", "--seconds", "6"],
                            cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: "queue.Queue[str]" = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        deadline, shown = time.monotonic() + TIMEOUT, None
        while shown is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1.0)
            except queue.Empty:
                assert proc.poll() is None, f"tk_book.py ended early: {proc.stderr.read()[-2000:]}"
                continue
            shown = re.search(r"^\[window\] tBTCUSD bid (\d+)\s+ask (\d+)\s+spread \d+ \| 12x12 rows \| synced \| "
                              r"checksums ok [1-9]", line)
        assert shown, "the window never reported a synced, verified book"
        assert int(shown.group(1)) < int(shown.group(2))
        assert float_artefacts(line) == [], line  # what the window shows: exact plain numbers

        info = subprocess.run(["xwininfo", "-display", display, "-name", TITLE], capture_output=True, text=True, timeout=10)
        assert info.returncode == 0, f"no window titled {TITLE!r}: {info.stderr}"
        window = re.search(r"Window id: (0x[0-9a-f]+)", info.stdout).group(1)
        dump = subprocess.run(["xwd", "-display", display, "-id", window, "-silent"], capture_output=True, timeout=10)
        assert dump.returncode == 0, dump.stderr
        width, height, rgb = read_xwd(dump.stdout)
        assert width >= 300 and height >= 200, (width, height)
        colours = {rgb[i:i + 3] for i in range(0, len(rgb), 3)}
        assert len(colours) >= 16, f"only {len(colours)} colours: a blank window?"  # text is anti-aliased
        write_png(tmp_path / "tk_book.png", width, height, rgb)
        if os.environ.get("BFXSYNC_SCREENSHOT"):
            shutil.copyfile(tmp_path / "tk_book.png", os.environ["BFXSYNC_SCREENSHOT"])

        code = proc.wait(TIMEOUT)  # --seconds closes the window, then the client and emulator
        err = proc.stderr.read()
        assert code == 0, err
        assert unexpected_stderr(err) == "", err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_tk_book_ctrl_c_exits_130(display):
    """Ctrl-C closes the window and the example exits 130, like every example and the CLI, without a traceback."""
    child = Interruptible([ROOT / "examples" / "tk_book.py", "--emulator"], env=child_env(DISPLAY=display),
                          ready=r"^\[window\] tBTCUSD bid \d+.* \| synced \|")
    code, out, err = child.interrupt()
    assert code == 130, err
    assert unexpected_stderr(err) == "", err


def test_tk_book_without_a_display_says_so_in_one_line():
    """No X display: one line saying the window cannot open, status 1, no traceback."""
    require(importlib.util.find_spec("_tkinter") is not None,
            f"tkinter is not available in {sys.executable} (Debian: apt-get install python3-tk)")
    env = child_env()
    env.pop("DISPLAY", None)
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "tk_book.py"), "--emulator", "--seconds", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("tk_book.py: cannot open a window: ") and len(proc.stderr.splitlines()) == 1, proc.stderr


@pytest.fixture
def without_tkinter(tmp_path):
    """A PYTHONPATH entry whose ``tkinter`` cannot be imported, as on Debian without python3-tk."""
    (tmp_path / "tkinter").mkdir()
    (tmp_path / "tkinter" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named '_tkinter'\", name='_tkinter')\n")
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join((str(tmp_path), env["PYTHONPATH"]))
    return env


def test_tk_book_help_works_without_tkinter(without_tkinter):
    """--help needs no tkinter: the usage, status 0."""
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "tk_book.py"), "--help"], cwd=ROOT,
                          env=without_tkinter, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: tk_book.py") and proc.stderr == ""


def test_tk_book_without_tkinter_says_so_in_one_line(without_tkinter):
    """Without tkinter the example stops with one line naming the package to install, status 1."""
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "tk_book.py"), "--emulator"], cwd=ROOT,
                          env=without_tkinter, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 1 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and "needs tkinter" in proc.stderr and "python3-tk" in proc.stderr
