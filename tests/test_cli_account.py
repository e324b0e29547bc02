"""``bfxsync account`` and ``bfxsync order`` end to end: real subprocesses against emulators on 127.0.0.1.

As in tests/test_cli.py, a module fixture starts every command at once and each test
collects and checks its own process. Credentials reach the commands the way users give
them: ``--emulator`` (the demo account), or BFX_API_KEY / BFX_API_SECRET with ``--url``.
"""
import os
import re
import signal
import sys
import threading

import pytest

from bfxsync import cli, cli_account
from bfxsync.emulator import Emulator, EmulatorAccount
from bfxsync.emulator.config import DEFAULT_ACCOUNTS

import test_cli as cli_tests
from test_cli import closed_port

TEST_WALLETS = {("exchange", "USD"): "1000", ("exchange", "BTC"): "0.5"}
#: A second account on the test emulators, for the commands given credentials through the environment.
TEST_ACCOUNT = EmulatorAccount("test-key", "test-secret", wallets=TEST_WALLETS)
# Processes that authenticate on the shared emulator at the same moment each have their own key:
# two processes signing with one key race on its nonce (10114), as they would on the exchange.
LINES_ACCOUNT = EmulatorAccount("lines-key", "lines-secret", wallets=TEST_WALLETS)
ANSI_ACCOUNT = EmulatorAccount("ansi-key", "ansi-secret", wallets=TEST_WALLETS)
REFUSED_ACCOUNT = EmulatorAccount("refused-key", "refused-secret", wallets=TEST_WALLETS)


class Processes(cli_tests.Processes):
    """test_cli's processes with the API credentials given per process (never inherited), results without the time."""

    def start(self, name, *args, key=None, secret=None):
        env = {k: v for k, v in os.environ.items() if k not in ("BFX_API_KEY", "BFX_API_SECRET")}
        if key is not None:
            env.update(BFX_API_KEY=key, BFX_API_SECRET=secret)
        super().start(name, *args, env=env)

    def result(self, name):
        """(returncode, stdout, stderr) of a finished process; a hung one is killed and fails the test."""
        return super().result(name)[:3]

    def first_line(self, name):
        """The first stdout line of a running process (the process is killed if none comes)."""
        proc = self.procs[name]
        guard = threading.Timer(cli_tests.TIMEOUT, proc.kill)  # readline() must not hang the suite
        guard.start()
        try:
            return proc.stdout.readline()
        finally:
            guard.cancel()


@pytest.fixture(scope="module")
def emulators():
    """Emulators knowing the demo account and the test accounts: shared, for dropping an order, for refusing a re-auth."""
    started = {}
    try:
        for name in ("shared", "drop", "reauth"):
            started[name] = Emulator(accounts=DEFAULT_ACCOUNTS + (TEST_ACCOUNT, LINES_ACCOUNT, ANSI_ACCOUNT,
                                                                  REFUSED_ACCOUNT)).start()
        yield started
    finally:
        for emu in started.values():
            emu.stop()


@pytest.fixture(scope="module")
def runs(emulators):
    url = emulators["shared"].url
    test_creds = {"key": TEST_ACCOUNT.key, "secret": TEST_ACCOUNT.secret}
    emulators["drop"].drop_after_next_input(applied=False)  # the next order input is lost with its connection
    procs = Processes()
    try:
        procs.start("once", "account", "--emulator", "--once")
        procs.start("lines", "account", "--url", url, "--seconds", "2.5", key=LINES_ACCOUNT.key, secret=LINES_ACCOUNT.secret)
        procs.start("ansi", "account", "--url", url, "--seconds", "1.5", "--display", "ansi", key=ANSI_ACCOUNT.key,
                    secret=ANSI_ACCOUNT.secret)
        procs.start("limit", "order", "tBTCUSD", "0.01", "--price", "20000", "--emulator")
        procs.start("market", "order", "tBTCUSD", "-0.1", "--type", "exchange market", "--emulator")
        procs.start("post_only", "order", "tBTCUSD", "-0.1", "--price", "1000", "--post-only", "--emulator")
        procs.start("ioc", "order", "tBTCUSD", "0.01", "--price", "1000", "--type", "exchange ioc", "--emulator")
        procs.start("no_balance", "order", "tBTCUSD", "100", "--price", "30000", "--emulator")
        procs.start("env_order", "order", "tBTCUSD", "-0.25", "--price", "90000", "--cid", "4242", "--url", url, **test_creds)
        procs.start("no_creds", "account", "--url", url, "--once")
        procs.start("wrong_secret", "account", "--url", url, "--once", key=REFUSED_ACCOUNT.key, secret="not-the-secret")
        procs.start("unknown_key", "order", "tBTCUSD", "0.01", "--price", "20000", "--url", url,
                    key="nobody", secret="nothing")
        procs.start("unreachable", "account", "--url", f"ws://127.0.0.1:{closed_port()}", "--once",
                    "--connect-timeout", "2", **test_creds)
        procs.start("dropped", "order", "tBTCUSD", "0.01", "--price", "20000", "--url", emulators["drop"].url, **test_creds)
        procs.start("reauth", "account", "--url", emulators["reauth"].url, **test_creds)  # until refused
        procs.start("interrupted", "account", "--emulator")  # no --seconds: runs until SIGINT
        yield procs
    finally:
        procs.kill_all()


class TestAccount:
    def test_once_shows_the_demo_wallets(self, runs):
        """account --emulator --once prints the demo account's wallets, empty positions and orders, and exits 0."""
        code, out, err = runs.result("once")
        assert code == 0, err
        assert err == ""
        for wallet, currency, balance in (("exchange", "USD", "100000"), ("exchange", "BTC", "2"), ("exchange", "ETH", "20"),
                                          ("margin", "USD", "50000"), ("margin", "USTF0", "50000"), ("funding", "USD", "20000")):
            assert re.search(rf"^  {wallet}\s+{currency}\s+{balance}\s+-$", out, re.M), out
        assert re.search(r"^Positions:\n  Symbol +Amount +Base price +P/L +Liq\. price +Status\n  \(none\)$", out, re.M)
        assert re.search(r"^Open orders:\n  Id +Symbol +Type +Amount +Original +Price +Status\n  \(none\)$", out, re.M)
        assert out.splitlines()[-1] == "user 1000001 | authenticated | 6 wallets, 0 positions, 0 open orders | reconnects 0"

    def test_lines_on_a_pipe_summarise_each_second(self, runs):
        """On a pipe the account prints one summary line a second with the environment's account, then exits 0."""
        code, out, err = runs.result("lines")
        assert code == 0, err
        lines = out.splitlines()
        assert len(lines) >= 2, out
        pattern = (r"^\d\d:\d\d:\d\d exchange:BTC [\d.]+ exchange:USD [\d.]+ \| positions none \| open orders \d+ "
                   r"\| authenticated$")
        assert all(re.match(pattern, line) for line in lines), out

    def test_ansi_display_redraws_the_tables(self, runs):
        """The plain terminal display clears the screen per frame and draws the three tables and the status."""
        code, out, err = runs.result("ansi")
        assert code == 0, err
        assert out.count("\x1b[H\x1b[J") >= 2
        frame = out.rsplit("\x1b[H\x1b[J", 1)[1]
        assert "Wallets:" in frame and "Positions:" in frame and "Open orders:" in frame
        assert re.search(r"^user \d+ \| authenticated \| 2 wallets, 0 positions, \d+ open orders \| reconnects 0$", frame, re.M)

    def test_refused_re_authentication_exits_1(self, runs, emulators):
        """A server that refuses the re-authentication after a drop ends the live view: one line, status 1."""
        assert "authenticated" in runs.first_line("reauth")
        emulators["reauth"].reject_auth(10100)
        emulators["reauth"].drop_connections()
        code, _, err = runs.result("reauth")
        assert code == 1
        assert err.splitlines()[-1] == ("bfxsync: authentication refused: apikey: invalid (code 10100): "
                                        "bad API key or signature (check the key and secret)")

    def test_ctrl_c_exits_cleanly(self, runs):
        """SIGINT while the view runs: status 130, no traceback."""
        assert "authenticated" in runs.first_line("interrupted")
        runs.procs["interrupted"].send_signal(signal.SIGINT)
        code, _, err = runs.result("interrupted")
        assert code in (0, 130)
        assert "Traceback" not in err


class TestOrder:
    def test_limit_order_rests(self, runs):
        """A limit buy under the market is placed: its id, ACTIVE, side, amount and price; status 0."""
        code, out, err = runs.result("limit")
        assert code == 0, err
        assert re.fullmatch(r"order \d+ ACTIVE \| tBTCUSD EXCHANGE LIMIT buy 0\.01 @ 20000 \| remaining 0\.01 \| cid \d+\n",
                            out), out

    def test_market_order_shows_the_fill(self, runs):
        """A market sell (type given in lower case) is reported EXECUTED with its average price, not as ACTIVE."""
        code, out, err = runs.result("market")
        assert code == 0, err
        assert re.fullmatch(r"order \d+ EXECUTED @ [\d.]+\(-0\.1\) \| tBTCUSD EXCHANGE MARKET sell 0\.1 @ \d+ "
                            r"\| remaining 0 \| avg \d+ \| cid \d+\n", out), out

    def test_post_only_cancelled_at_once_is_status_1(self, runs):
        """A post-only order that would take is cancelled by the exchange: the line says so, status 1."""
        code, out, err = runs.result("post_only")
        assert code == 1, err
        assert re.match(r"order \d+ POSTONLY CANCELED \| tBTCUSD EXCHANGE LIMIT sell 0\.1 @ 1000 \| remaining 0\.1", out), out

    def test_ioc_that_cannot_fill_shows_its_final_status(self, runs):
        """An IOC buy under the asks is accepted, then cancelled unfilled: the line shows IOC CANCELED, status 1."""
        code, out, err = runs.result("ioc")
        assert code == 1, err
        assert re.fullmatch(r"order \d+ IOC CANCELED \| tBTCUSD EXCHANGE IOC buy 0\.01 @ 1000 \| remaining 0\.01 "
                            r"\| cid \d+\n", out), out

    def test_insufficient_balance_is_refused_with_the_reason(self, runs):
        """An order beyond the wallet is refused: the server's reason in one line, status 1, nothing on stdout."""
        code, out, err = runs.result("no_balance")
        assert code == 1 and out == ""
        assert err == "bfxsync: order refused: Invalid order: not enough exchange balance for 100.0 BTCUSD at 30000.0\n"

    def test_order_with_credentials_from_the_environment(self, runs, emulators):
        """BFX_API_KEY / BFX_API_SECRET with --url trade that account; --cid is the order's cid."""
        code, out, err = runs.result("env_order")
        assert code == 0, err
        order_id = int(re.fullmatch(r"order (\d+) ACTIVE \| tBTCUSD EXCHANGE LIMIT sell 0\.25 @ 90000 \| remaining 0\.25 "
                                    r"\| cid 4242\n", out).group(1))
        assert order_id in [order.id for order in emulators["shared"].account(TEST_ACCOUNT.key).orders]

    def test_dropped_connection_is_an_unknown_outcome(self, runs):
        """The connection drops with the order in flight: status 1 and a line saying it may or may not be placed."""
        code, out, err = runs.result("dropped")
        assert code == 1 and out == ""
        assert len(err.splitlines()) == 1 and "may or may not have been executed" in err, err


class TestFailures:
    def test_missing_credentials_is_status_2(self, runs):
        """Without --emulator and without the variables: one line naming both, status 2."""
        code, out, err = runs.result("no_creds")
        assert code == 2 and out == ""
        assert err == ("bfxsync: no API credentials: set BFX_API_KEY and BFX_API_SECRET "
                       "(or use --emulator for the emulator's demo account)\n")

    def test_wrong_secret_is_refused_with_the_hint(self, runs):
        """A wrong secret: the server's reason and the hint in one line, status 1."""
        code, out, err = runs.result("wrong_secret")
        assert code == 1 and out == ""
        assert err == ("bfxsync: authentication refused: apikey: digest invalid (code 10100): "
                       "bad API key or signature (check the key and secret)\n")

    def test_unknown_key_refuses_the_order_command_too(self, runs):
        """order with a key the server does not know: refused authentication, status 1."""
        code, out, err = runs.result("unknown_key")
        assert code == 1 and out == ""
        assert err.startswith("bfxsync: authentication refused: apikey: invalid (code 10100)") and len(err.splitlines()) == 1

    def test_unreachable_server_is_status_1(self, runs):
        """Nobody listening: one line naming the URL and the connection failure, status 1."""
        code, out, err = runs.result("unreachable")
        assert code == 1 and out == ""
        assert re.fullmatch(r"bfxsync: not authenticated at ws://127\.0\.0\.1:\d+ within 2 s: .*refused.*\n", err), err


class TestInProcess:
    """Argument errors: reported before any connection is made."""

    @pytest.mark.parametrize("argv, message", [
        (["order", "tBTCUSD", "0.01"], "price is required for EXCHANGE LIMIT orders"),
        (["order", "tBTCUSD", "0"], "amount must be non-zero"),
        (["order", "tBTCUSD", "1", "--price", "NaN"], "price must be finite"),
        (["order", "btcusd", "1", "--price", "1"], "symbol must be a trading symbol"),
        (["order", "tBTCUSD", "0.01", "--type", "market", "--post-only"], "post_only cannot apply to a MARKET order"),
    ])
    def test_invalid_order_is_status_2(self, capsys, argv, message):
        """The library's own checks run before connecting: one line, status 2."""
        assert cli.main([*argv, "--url", f"ws://127.0.0.1:{closed_port()}"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("bfxsync: ") and message in err and len(err.splitlines()) == 1, err

    @pytest.mark.parametrize("argv", [["order", "tBTCUSD", "abc", "--price", "1"], ["order", "tBTCUSD", "1", "--price", "0.1f"],
                                      ["order", "tBTCUSD", "1", "--type", "LIMITED"]])
    def test_bad_numbers_and_types_are_usage_errors(self, capsys, argv):
        """Amounts and prices must be decimal text; the type one of the order types (argparse, status 2)."""
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv)
        assert exit_info.value.code == 2

    def test_plain_ws_beyond_loopback_is_refused(self, capsys, monkeypatch):
        """Credentials never go over plain ws:// to another host: status 2 before connecting."""
        monkeypatch.setenv("BFX_API_KEY", "k")
        monkeypatch.setenv("BFX_API_SECRET", "s")
        assert cli.main(["account", "--once", "--url", "ws://example.invalid/ws/2"]) == 2
        assert "refusing to authenticate over plain ws://" in capsys.readouterr().err

    def test_amounts_are_parsed_as_decimal_text(self):
        """The amount keeps its exact text (no float on the way)."""
        args = cli.build_parser().parse_args(["order", "tBTCUSD", "-0.1000000000000000055511151231257827", "--price", "1e3"])
        assert str(args.amount) == "-0.1000000000000000055511151231257827"
        assert format(args.price, "f") == "1000"

    def test_missing_emulator_extra_is_one_line_and_status_2(self, capsys, monkeypatch):
        """Without the emulator extra, --emulator says which extra to install, status 2."""
        monkeypatch.setitem(sys.modules, "bfxsync.emulator", None)  # makes the import raise ImportError
        assert cli.main(["order", "tBTCUSD", "0.01", "--price", "1", "--emulator"]) == 2
        err = capsys.readouterr().err
        assert 'pip install "websockets>=15"' in err and len(err.strip().splitlines()) == 1


def test_commands_are_subcommands():
    """Both commands parse as subcommands of bfxsync."""
    for command in cli_account.COMMANDS:
        argv = [command] if command == "account" else [command, "tBTCUSD", "1"]
        assert cli.build_parser().parse_args(argv).command == command
