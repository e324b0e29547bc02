#!/usr/bin/env python3
"""Many connections in one process: aggregate throughput, and a quiet stream's latency under load.

  python bench/many_connections.py [--scenarios throughput,quiet,account] [--rounds 3]
                                   [--total 200000] [--ks 1,2,5,10,20] [--seconds 5]
                                   [--quiet-rate 1000] [--busy-rate 2000]
                                   [--cases idle,5x2k,20x2k,1sat,5sat,20sat]
                                   [--clients bfxsync,unpinned,split,bare,bfxsync@0.0005]
                                   [--candidate PATH ...]

The design runs one WebSocketApp per connection on its own thread, so K busy connections
are K threads sharing one GIL. The baseline everywhere is the same number of bare
websocket-client ``WebSocketApp`` threads that ``json.loads`` each frame and count: what
the design costs before bfxsync does anything.

throughput  One client, one P0 book per connection (``max_subscriptions=1``), K connections,
            the same ``--total`` updates in all (a correct ``cs`` frame every 50 updates to
            bfxsync, which verifies them). Prints updates/s per K, the ratio to K=1, and the
            ratio to K bare threads.
quiet       Trades at ``--quiet-rate``/s on a connection of their own (the shape of a ticker
            or an account connection), stamped with their send time, while K other
            connections of the same process are busy: at ``--busy-rate`` trades/s each, or
            saturating (books as fast as the server writes). Prints send -> callback p50/p99
            and how many of the quiet stream's messages arrived during the window.
account     The stream that matters most: an authenticated client's own order events. The
            emulator runs in its own process; orders are submitted at 20/s and the time from
            ``submit_order`` to the order's ``on`` event in ``on_orders`` is measured, with 0
            and with K saturating connections in the same process.

Every run is a fresh process (``--child``); rounds interleave the runs in a shuffled order
and medians are printed. ``--candidate PATH`` (repeatable) adds a client named after the
directory: the bfxsync of another checkout (a git worktree with an idea to try), run
interleaved with this one, which is how a change to the receive path is kept or dropped
(an A/B in one run). A client named ``NAME@SECONDS`` (``bfxsync@0.0005``, ``bare@0.0005``)
is that client in a process that first calls ``sys.setswitchinterval(SECONDS)``: the
interpreter's GIL hand-off interval (5 ms by default), the one lever that bounds how long
a thread that is ready to run waits for a busy one. Client ``split`` (quiet scenario) runs
the quiet stream in one bfxsync process and the K busy connections in another: the GIL
taken out, the machine's cores still shared. Client ``unpinned`` is bfxsync with
``reader_cpu=None``: its readers are never made to share one CPU (what bfxsync did before
``Config.reader_cpu``).
Loopback servers: ``bench/loopback.py`` (it costs next to nothing, so the clients' cost
dominates).
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

#: id -> (label, K busy connections, busy rate per connection: 0 saturates)
QUIET_CASES = {"idle": ("0 busy", 0, None), "5x2k": ("5 x 2,000/s", 5, "busy"), "20x2k": ("20 x 2,000/s", 20, "busy"),
               "1sat": ("1 saturating", 1, 0), "5sat": ("5 saturating", 5, 0), "20sat": ("20 saturating", 20, 0)}
ACCOUNT_CASES = {"idle": ("0 busy", 0), "5sat": ("5 saturating", 5), "20sat": ("20 saturating", 20)}
BUSY_CONFIG = dict(max_subscriptions=1, max_connects_per_minute=10_000, subscribe_rate=1000.0, subscribe_burst=1000)


# -- servers --------------------------------------------------------------------------------------

class Server:
    """A process serving WebSocket connections on 127.0.0.1; ``url`` once it listens."""

    def __init__(self, *command):
        self.proc = subprocess.Popen([sys.executable, *command], stdout=subprocess.PIPE, text=True, cwd=ROOT)
        line = self.proc.stdout.readline().split()
        if not line:
            self.close()
            raise SystemExit(f"server {command} did not start")
        self.url = line[-1] if line[0] != "PORT" else f"ws://127.0.0.1:{int(line[1])}/ws/2"

    def close(self):
        self.proc.kill()
        self.proc.wait()


def loopback(*args):
    return Server(os.path.join(HERE, "loopback.py"), *map(str, args))


# -- children: one measurement each, in a fresh process -----------------------------------------

def _bare_apps(url, count, subscribe, on_frame):
    """``count`` bare WebSocketApps on their own threads; ``on_frame(i, msg)`` gets each parsed frame."""
    import websocket
    loads, apps = json.loads, []
    for i in range(count):
        def on_message(app, raw, i=i):
            on_frame(i, loads(raw))
        app = websocket.WebSocketApp(url, on_open=lambda app, i=i: app.send(json.dumps(subscribe(i))),
                                     on_message=on_message)
        threading.Thread(target=app.run_forever, kwargs={"skip_utf8_validation": True}, daemon=True).start()
        apps.append(app)
    return apps


def _book_request(i):
    return {"event": "subscribe", "channel": "book", "symbol": f"tS{i:03d}USD", "prec": "P0", "len": "25"}


def _trades_request(i):
    return {"event": "subscribe", "channel": "trades", "symbol": f"tS{i:03d}USD"}


def child_throughput(args):
    """K connections, ``--per`` book updates each; prints ``RESULT updates/s``."""
    k, per = args.k, args.per
    counts, marks, lock, done = [0] * k, {}, threading.Lock(), threading.Event()

    def first():
        with lock:
            marks.setdefault("t0", time.perf_counter())

    def finished(i):
        if counts[i] >= per:
            with lock:
                marks["left"] = marks.get("left", k) - 1
                if marks["left"] == 0:
                    marks["t1"] = time.perf_counter()
                    done.set()

    if args.client == "bare":
        snapshot_seen = [False] * k

        def on_frame(i, msg):
            if type(msg) is list and msg[1] != "hb" and msg[1] != "cs":
                if not snapshot_seen[i]:
                    snapshot_seen[i] = True
                    first()
                    return
                counts[i] += 1
                finished(i)

        apps = _bare_apps(args.url, k, _book_request, on_frame)
        ok = done.wait(300)
        for app in apps:
            app.close()
    else:
        import bfxsync
        with bfxsync.Client(args.url, **BUSY_CONFIG, **_options(args)) as client:
            def make(i):
                def on_data(message):
                    if message.snapshot:
                        first()
                        return
                    counts[i] += len(message.items)
                    finished(i)
                return on_data
            books = [client.subscribe_book(f"tS{i:03d}USD", on_data=make(i)) for i in range(k)]
            ok = done.wait(300)
            failed = sum(book.checks_failed for book in books)
            if ok and (failed or len(client.connections()) != k):
                print(f"FAIL checksum failures {failed}, connections {len(client.connections())}", flush=True)
                os._exit(1)
    if not ok:
        print(f"FAIL timed out: {sum(counts)} of {k * per}", flush=True)
        os._exit(1)
    print("RESULT", sum(counts) / (marks["t1"] - marks["t0"]), flush=True)
    os._exit(0)  # the busy servers' streams may still be arriving: do not wait for a clean close


def _options(args):
    """Client options a child was given: ``--reader-cpu`` (client ``unpinned`` is ``--reader-cpu none``)."""
    if args.reader_cpu is None:
        return {}
    return {"reader_cpu": None if args.reader_cpu == "none" else
            args.reader_cpu if args.reader_cpu == "auto" else int(args.reader_cpu)}


def _start_busy(args, counter):
    """K busy connections in this process (nothing when K is 0); returns a closer.

    ``counter`` has K + 1 counts: the frames of all the busy connections, then each one's.

    Client ``split``: the K connections are a bfxsync client in a second process instead
    (``--child busy``), which is what running heavy books elsewhere looks like.
    """
    if not args.k:
        return lambda: None
    if args.client == "split":
        child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", "busy", "--client", "bfxsync",
                                  "--k", str(args.k), "--busy-url", args.busy_url, "--busy-kind", args.busy_kind],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        if child.stdout.readline().strip() != "READY":
            raise SystemExit("the busy process did not start")

        def close():
            child.kill()
            child.wait()
        return close
    request = _trades_request if args.busy_kind == "trades" else _book_request
    if args.client == "bare":
        def count_frame(i, msg):
            counter[0] += 1
            counter[1 + i] += 1
        apps = _bare_apps(args.busy_url, args.k, request, count_frame)
        return lambda: [app.close() for app in apps]
    import bfxsync
    client = bfxsync.Client(args.busy_url, **BUSY_CONFIG, **_options(args)).start()

    def make(i):
        def count(message):
            counter[0] += 1
            counter[1 + i] += 1
        return count
    subscribe = client.subscribe_trades if args.busy_kind == "trades" else client.subscribe_book
    for i in range(args.k):
        subscribe(f"tS{i:03d}USD", on_data=make(i))
    return client.close


def _wait_busy(args, counter):
    """Until every busy connection has data (bfxsync opens them 50 ms apart) and 20 frames each came."""
    deadline = time.monotonic() + 30
    while (args.k and args.client != "split" and (not all(counter[1:]) or counter[0] < 20 * args.k)
           and time.monotonic() < deadline):
        time.sleep(0.01)


def child_busy(args):
    """The busy half of client ``split``: prints READY once data flows, runs until killed."""
    counter = [0] * (args.k + 1)
    _start_busy(args, counter)
    _wait_busy(args, counter)
    print("READY", flush=True)
    sys.stdin.read()  # until the parent kills this process (or closes the pipe)
    os._exit(0)


def _quantiles(samples_us):
    samples_us.sort()
    pick = lambda q: samples_us[min(len(samples_us) - 1, int(q * len(samples_us)))]  # noqa: E731
    return pick(0.5), pick(0.99)


def child_quiet(args):
    """The quiet stream's latency while K connections are busy; prints ``LATENCY n p50_us p99_us busy_frames``."""
    busy = [0] * (args.k + 1)
    close_busy = _start_busy(args, busy)
    _wait_busy(args, busy)
    clock, samples, expected = time.time_ns, [], int(args.quiet_rate * args.seconds)
    busy_at_start = busy[0]
    if args.client == "bare":  # (split: the quiet stream is bfxsync, below)
        def on_frame(i, msg, clock=clock):
            received = clock()
            if type(msg) is list and msg[1] == "te":
                samples.append(received - msg[2][1])
        apps = _bare_apps(args.quiet_url, 1, lambda i: {"event": "subscribe", "channel": "trades", "symbol": "tBTCUSD"},
                          on_frame)
        close_quiet = apps[0].close
    else:
        import bfxsync
        quiet = bfxsync.Client(args.quiet_url, **_options(args)).start()

        def on_data(message, clock=clock):
            received = clock()
            if not message.snapshot:
                samples.append(received - message.items[0].mts)
        quiet.subscribe_trades("tBTCUSD", on_data=on_data)
        close_quiet = quiet.close
    deadline = time.monotonic() + args.seconds + 20
    while len(samples) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    busy_frames = busy[0] - busy_at_start
    samples = samples[:expected]  # the stream goes on: what came after the window is not counted
    got = len(samples)
    p50, p99 = _quantiles([s / 1000 for s in samples]) if samples else (float("nan"), float("nan"))
    print("LATENCY", got, expected, p50, p99, busy_frames, flush=True)
    close_quiet()
    close_busy()
    os._exit(0)


def child_account(args):
    """Order submit -> its ``on`` event while K connections are busy; prints ``LATENCY n p50_us p99_us``."""
    import bfxsync
    from bfxsync.emulator import DEMO_KEY, DEMO_SECRET
    busy = [0] * (args.k + 1)
    close_busy = _start_busy(args, busy)
    _wait_busy(args, busy)
    sent, samples = {}, []
    client = bfxsync.Client(args.account_url, api_key=DEMO_KEY, api_secret=DEMO_SECRET, input_rate=100.0,
                            **_options(args))

    @client.account.on_orders
    def on_orders(message):
        received = time.perf_counter_ns()
        if message.tag == "on":
            started = sent.pop(message.item.cid, None)
            if started is not None:
                samples.append((received - started) / 1000)

    client.start()
    client.wait_authenticated(30)
    interval, count = 1 / 20, int(20 * args.seconds)
    next_at = time.perf_counter()
    for i in range(count):
        next_at += interval
        time.sleep(max(0.0, next_at - time.perf_counter()))
        cid = 1_000_000 + i
        sent[cid] = time.perf_counter_ns()
        client.account.submit_order("tBTCUSD", "0.001", "1000", cid=cid)  # far below the market: it rests
    deadline = time.monotonic() + 20
    while len(samples) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    p50, p99 = _quantiles(samples) if samples else (float("nan"), float("nan"))
    print("LATENCY", len(samples), count, p50, p99, busy[0], flush=True)
    client.close()
    close_busy()
    os._exit(0)


# -- the parent: servers, interleaved rounds, the report ----------------------------------------

def run_child(args, client, kind, *child_args):
    """Run one child; its RESULT/LATENCY line split into fields (a FAIL line stops the bench)."""
    client, _, interval = client.partition("@")
    if interval:
        child_args = ("--switch-interval", interval, *child_args)
    if client == "unpinned":
        client, child_args = "bfxsync", ("--reader-cpu", "none", *child_args)
    if client in args.candidates:
        child_args = ("--candidate", args.candidates[client], *child_args)
        client = "candidate"
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", kind, "--client", client,
                          *map(str, child_args)],
                         capture_output=True, text=True, timeout=900, cwd=ROOT)
    for line in out.stdout.splitlines():
        if line.startswith(("RESULT", "LATENCY")):
            return [float(x) for x in line.split()[1:]]
    raise SystemExit(f"child {kind} {client} {child_args} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")


def throughput(args, ks):
    rates = {(client, k): [] for client in args.clients for k in ks}
    for round_ in range(args.rounds):
        runs = list(rates)
        random.shuffle(runs)
        for client, k in runs:
            per = args.total // k
            server = loopback("--channel", "book", "--messages", per, "--cs-every", 50, "--together", k)
            try:
                rates[client, k].append(run_child(args, client, "throughput", "--url", server.url,
                                                  "--k", k, "--per", per)[0])
            finally:
                server.close()
            print(f"  round {round_ + 1}: {client:7} K={k:2} {rates[client, k][-1]:>10,.0f} updates/s", flush=True)
    print(f"\nThroughput: one client, one book per connection, {args.total:,} updates in all, "
          f"medians of {args.rounds} interleaved rounds\n")
    ours = [client for client in args.clients if client.partition("@")[0] != "bare"]
    baseline = next((client for client in args.clients if client.partition("@")[0] == "bare"), None)
    print("| connections | " + " | ".join(f"{c} updates/s | {c} vs 1 connection" for c in ours)
          + (f" | {baseline} threads updates/s | {ours[0] if ours else '-'} / {baseline}" if baseline else "") + " |")
    print("|---:" * (1 + 2 * len(ours) + 2 * (baseline is not None)) + "|")
    for k in ks:
        cells = [str(k)]
        for client in ours:
            rate = statistics.median(rates[client, k])
            cells += [f"{rate:,.0f}", f"{rate / statistics.median(rates[client, ks[0]]):.2f}"]
        if baseline:
            bare = statistics.median(rates[baseline, k])
            cells += [f"{bare:,.0f}", f"{statistics.median(rates[ours[0], k]) / bare:.2f}" if ours else "-"]
        print("| " + " | ".join(cells) + " |")


def quiet(args):
    results = {(client, case): [] for client in args.clients for case in args.cases if case in QUIET_CASES}
    for round_ in range(args.rounds):
        runs = list(results)
        random.shuffle(runs)
        for client, case in runs:
            label, k, rate = QUIET_CASES[case]
            rate = args.busy_rate if rate == "busy" else rate
            servers = [loopback("--pace", args.quiet_rate, "--seconds", args.seconds + 30, "--channel", "trades")]
            try:
                busy_url, kind = "-", "book"
                if k and rate:
                    servers.append(loopback("--pace", rate, "--seconds", args.seconds + 60, "--channel", "trades"))
                    busy_url, kind = servers[-1].url, "trades"
                elif k:
                    per = int(250_000 * (args.seconds + 10) / k)  # more than the busy ones can read meanwhile
                    servers.append(loopback("--channel", "book", "--messages", per, "--cs-every", 50))
                    busy_url = servers[-1].url
                results[client, case].append(run_child(
                    args, client, "quiet", "--k", k, "--busy-url", busy_url, "--busy-kind", kind,
                    "--quiet-url", servers[0].url, "--quiet-rate", args.quiet_rate, "--seconds", args.seconds))
            finally:
                for server in servers:
                    server.close()
            got, expected, p50, p99, busy_frames = results[client, case][-1]
            print(f"  round {round_ + 1}: {client:9} {label:14} p50 {p50:9,.0f} us  p99 {p99:9,.0f} us  "
                  f"({got:.0f} of {expected:.0f}; busy ones read {busy_frames / args.seconds:,.0f}/s)", flush=True)
    print(f"\nA quiet stream ({args.quiet_rate:,}/s trades) while K connections of the process are busy, "
          f"medians of {args.rounds} interleaved rounds\n")
    print("| K busy connections | " + " | ".join(f"{c} p50 us | {c} p99 us | {c} received" for c in args.clients)
          + " |")
    print("|---" + "|---:" * (3 * len(args.clients)) + "|")
    med = lambda rows, i: statistics.median(row[i] for row in rows)  # noqa: E731
    for case in args.cases:
        if case not in QUIET_CASES:
            continue
        cells = [QUIET_CASES[case][0]]
        for client in args.clients:
            rows = results[client, case]
            cells += [f"{med(rows, 2):,.0f}", f"{med(rows, 3):,.0f}", f"{min(r[0] / r[1] for r in rows):.0%}"]
        print("| " + " | ".join(cells) + " |")


def account(args):
    clients = [client for client in args.clients if client.partition("@")[0] != "bare"]
    results = {(client, case): [] for client in clients for case in args.cases if case in ACCOUNT_CASES}
    for round_ in range(args.rounds):
        runs = list(results)
        random.shuffle(runs)
        for client, case in runs:
            label, k = ACCOUNT_CASES[case]
            emulator = Server("-m", "bfxsync.emulator", "--connect-limit", "0")
            servers = [emulator]
            try:
                busy_url = "-"
                if k:
                    per = int(250_000 * (args.seconds + 10) / k)
                    servers.append(loopback("--channel", "book", "--messages", per, "--cs-every", 50))
                    busy_url = servers[-1].url
                results[client, case].append(run_child(args, client, "account", "--k", k, "--busy-url", busy_url,
                                                "--busy-kind", "book", "--account-url", emulator.url,
                                                "--seconds", args.seconds))
            finally:
                for server in servers:
                    server.close()
            got, expected, p50, p99, _ = results[client, case][-1]
            print(f"  round {round_ + 1}: {client:9} {label:14} p50 {p50:9,.0f} us  p99 {p99:9,.0f} us "
                  f"({got:.0f} of {expected:.0f})", flush=True)
    print(f"\nOrder events: submit_order -> its 'on' event, 20 orders/s against the emulator (its own process), "
          f"medians of {args.rounds} rounds\n")
    print("| K saturating connections | " + " | ".join(f"{c} p50 us | {c} p99 us | {c} events received" for c in clients)
          + " |")
    print("|---" + "|---:" * (3 * len(clients)) + "|")
    for case in args.cases:
        if case not in ACCOUNT_CASES:
            continue
        cells = [ACCOUNT_CASES[case][0]]
        for client in clients:
            rows = results[client, case]
            cells += [f"{statistics.median(r[2] for r in rows):,.0f}", f"{statistics.median(r[3] for r in rows):,.0f}",
                      f"{min(r[0] / r[1] for r in rows):.0%}"]
        print("| " + " | ".join(cells) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenarios", default="throughput,quiet,account")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--total", type=int, default=200_000)
    parser.add_argument("--ks", default="1,2,5,10,20")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--quiet-rate", type=int, default=1000)
    parser.add_argument("--busy-rate", type=int, default=2000)
    parser.add_argument("--cases", default=",".join(QUIET_CASES),
                        help="which quiet/account cases to run: " + ", ".join(QUIET_CASES))
    parser.add_argument("--clients", default="bfxsync,bare",
                        help="bfxsync, unpinned (reader_cpu=None), bare and/or split (quiet: busy connections "
                             "in a second process), "
                             "each optionally NAME@SECONDS (run with that switch interval)")
    parser.add_argument("--candidate", metavar="PATH", action="append", default=[],
                        help="another checkout: its bfxsync runs interleaved, named after the directory")
    # a child's arguments
    parser.add_argument("--child", choices=("throughput", "quiet", "account", "busy"), help=argparse.SUPPRESS)
    parser.add_argument("--client", choices=("bfxsync", "bare", "candidate", "split"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--k", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--per", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--busy-url", help=argparse.SUPPRESS)
    parser.add_argument("--busy-kind", choices=("book", "trades"), default="book", help=argparse.SUPPRESS)
    parser.add_argument("--quiet-url", help=argparse.SUPPRESS)
    parser.add_argument("--account-url", help=argparse.SUPPRESS)
    parser.add_argument("--switch-interval", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--reader-cpu", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.switch_interval:
            sys.setswitchinterval(args.switch_interval)
        if args.client == "candidate":
            sys.path.insert(0, os.path.abspath(args.candidate[0]))  # its bfxsync shadows this checkout's
            import bfxsync
            if not bfxsync.__file__.startswith(os.path.abspath(args.candidate[0])):
                raise SystemExit(f"the candidate's bfxsync was not imported: {bfxsync.__file__}")
        {"throughput": child_throughput, "quiet": child_quiet, "account": child_account,
         "busy": child_busy}[args.child](args)
        return
    scenarios = args.scenarios.split(",")
    args.cases = args.cases.split(",")
    args.candidates = {os.path.basename(os.path.abspath(path)): path for path in args.candidate}
    args.clients = list(dict.fromkeys(args.clients.split(",") + list(args.candidates)))  # each once
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs", flush=True)
    if "throughput" in scenarios:
        throughput(args, [int(k) for k in args.ks.split(",")])
    if "quiet" in scenarios:
        quiet(args)
    if "account" in scenarios:
        account(args)


if __name__ == "__main__":
    main()
