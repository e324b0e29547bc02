#!/usr/bin/env python3
"""bfxsync against a bare WebSocketApp and its peers: throughput, latency and memory, one command.

  python bench/compare.py [--messages 200000] [--rounds 3] [--scenarios book-cs50,book-cs1,trades,ticker]
                          [--no-tls] [--latency-seconds 5] [--memory-updates 1000000]

Throughput: one loopback server per scenario (``loopback.py``: the stream is pre-built, so
the server costs next to nothing) and, each round in a shuffled order, every client in a
fresh process (``clients.py``):

  book-cs50  N P0 book updates, a correct cs frame after every 50 (to clients that enable checksums)
  book-cs1   the same with a cs frame after every update
  trades     N "te" trades
  ticker     N tickers

Clients: the bare WebSocketApp that only counts (the ceiling), bfxsync with its defaults
(checksums verified, sorted book, one user callback per update) over ws:// and wss://
(loopback TLS, a throwaway CA from ``trustme``), bitfinex-api-py 4.0.0 and btfxwss 1.2.4.
The peers run from their own venv, ``.bench-venv/`` at the top of the checkout, which this
script creates on first run (``python -m venv`` + pip): bitfinex-api-py pins websockets 12,
which the project's test extra cannot share. btfxwss reads a few thousand updates/s, so it
gets ``--messages // 40`` of them (its rate is what is compared).

Latency: the server sends trades at 5,000/s, each stamped with its send time; the clients
(a bare WebSocketApp + json.loads, and bfxsync) take the time first thing in their
callback; p50/p99 of send -> callback, medians over the rounds.

Memory: RSS and thread count of a bfxsync client after its first 10,000 book updates
(cs every 50) and after ``--memory-updates``.

Prints medians, min/max, ratios and whether each target is met.

Many connections in one process (aggregate throughput over K connections, a quiet stream's
latency while K connections are busy, an account's order events under load, all against
bare WebSocketApp threads) are measured by the sibling ``bench/many_connections.py``.
"""
import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEER_VENV = os.path.join(ROOT, ".bench-venv")
PEERS = {"bfxapi": ("bfxapi", "bitfinex-api-py==4.0.0"), "btfxwss": ("btfxwss", "btfxwss==1.2.4")}
SCENARIOS = {"book-cs50": ("book", 50), "book-cs1": ("book", 1), "trades": ("trades", 0), "ticker": ("ticker", 0)}
KB_5MB = 5 * 1024


def peer_python(notes):
    """The peers' interpreter and the peers it can import, creating the venv on first run."""
    python = os.path.join(PEER_VENV, "bin", "python")
    if not os.path.exists(python):
        print("creating %s for the peers (first run)" % PEER_VENV, flush=True)
        subprocess.run([sys.executable, "-m", "venv", PEER_VENV], check=True)
    usable = []
    for name, (module, requirement) in PEERS.items():
        if subprocess.run([python, "-c", "import " + module], capture_output=True).returncode != 0:
            install = subprocess.run([python, "-m", "pip", "install", "-q", requirement], capture_output=True, text=True)
            if install.returncode != 0:
                notes.append("%s: pip install %s failed: %s" % (name, requirement, install.stderr.strip()[-200:]))
                continue
        if subprocess.run([python, "-c", "import " + module], capture_output=True).returncode != 0:
            notes.append("%s: installed but cannot be imported on this Python" % name)
            continue
        usable.append(name)
    return python, usable


def make_cert(directory):
    """A self-signed certificate for 127.0.0.1 (needs the 'trustme' test extra)."""
    import trustme
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile, cafile = (os.path.join(directory, name) for name in ("cert.pem", "key.pem", "ca.pem"))
    cert.private_key_and_cert_chain_pem.write_to_path(certfile)
    cert.private_key_pem.write_to_path(keyfile)
    ca.cert_pem.write_to_path(cafile)
    return certfile, keyfile, cafile


def start_server(extra, tls_files=None):
    cmd = [sys.executable, os.path.join(HERE, "loopback.py")] + extra
    if tls_files:
        cmd += ["--certfile", tls_files[0], "--keyfile", tls_files[1]]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline().split()[1])
    return server, ("wss" if tls_files else "ws") + "://127.0.0.1:%d/ws/2" % port


def run_client(python, name, url, extra, prefix):
    cmd = [python, os.path.join(HERE, "clients.py"), name, "--url", url] + extra
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    lines = [ln.split() for ln in result.stdout.splitlines() if ln.startswith(prefix + " ")]
    if not lines:
        return None, (result.stdout + result.stderr).strip()[-300:]
    return lines[-1], None


def spread(values):
    return "%8.0f %8.0f %8.0f" % (statistics.median(values), min(values), max(values))


def throughput(args, python, peers, servers, cafile):
    configs = []
    for scenario in args.scenarios:
        configs += [(scenario, "wsapp-raw", False), (scenario, "bfxsync", False)]
        configs += [(scenario, peer, False) for peer in peers]
        if cafile:
            configs.append((scenario, "bfxsync", True))
    rates = {config: [] for config in configs}
    for round_number in range(1, args.rounds + 1):
        order = list(configs)
        random.Random(round_number).shuffle(order)
        for scenario, name, tls in order:
            n = max(1000, args.messages // 40) if name == "btfxwss" else args.messages
            extra = ["--channel", SCENARIOS[scenario][0], "--messages", str(n)] + (["--cafile", cafile] if tls else [])
            line, error = run_client(python if name in PEERS else sys.executable, name, servers[scenario, tls],
                                     extra, "RESULT")
            label = "%-9s %-9s%s" % (scenario, name, " wss" if tls else "")
            if error:
                print("round %d  %s FAILED %s" % (round_number, label, error), flush=True)
                continue
            rates[scenario, name, tls].append(n / float(line[3]))
            print("round %d  %s %10.0f updates/s" % (round_number, label, rates[scenario, name, tls][-1]), flush=True)
    return rates


def latency(args):
    server, url = start_server(["--pace", "5000", "--seconds", str(args.latency_seconds)])
    figures = {"lat-wsapp": [], "lat-bfxsync": []}
    try:
        for round_number in range(1, args.rounds + 1):
            order = list(figures)
            random.Random(round_number).shuffle(order)
            for name in order:
                line, error = run_client(sys.executable, name, url, [], "LATENCY")
                if error:
                    print("latency round %d %s FAILED %s" % (round_number, name, error), flush=True)
                    continue
                figures[name].append((float(line[3]), float(line[4])))
                print("latency round %d  %-12s p50 %6.1f us  p99 %7.1f us (%s samples)"
                      % (round_number, name, figures[name][-1][0], figures[name][-1][1], line[2]), flush=True)
    finally:
        server.kill()
    return {name: (statistics.median(p[0] for p in v), statistics.median(p[1] for p in v))
            for name, v in figures.items() if v}


def memory(args):
    server, url = start_server(["--channel", "book", "--messages", str(args.memory_updates), "--cs-every", "50"])
    try:
        line, error = run_client(sys.executable, "mem-bfxsync", url, ["--messages", str(args.memory_updates)], "MEMORY")
    finally:
        server.kill()
    if error:
        print("memory FAILED", error)
        return None
    return [int(x) for x in line[1:]]


def verdict(ok):
    return "met" if ok else "NOT MET"


def report(args, rates, lat, mem, notes, peers):
    medians = {config: statistics.median(r) for config, r in rates.items() if r}
    targets = []
    print("\nthroughput, updates/s: median min max over %d rounds (%d updates; btfxwss %d)"
          % (args.rounds, args.messages, max(1000, args.messages // 40)))
    for scenario in args.scenarios:
        print("%s" % scenario)
        for (s, name, tls), values in rates.items():
            if s == scenario and values:
                print("  %-14s %s" % (name + (" wss" if tls else ""), spread(values)))
        mine = medians.get((scenario, "bfxsync", False))
        if not mine:
            continue
        for other in ["wsapp-raw"] + peers:
            if (scenario, other, False) in medians:
                print("  bfxsync / %-10s %.2fx" % (other, mine / medians[scenario, other, False]))
        if (scenario, "bfxsync", True) in medians:
            print("  bfxsync wss / ws      %.2fx" % (medians[scenario, "bfxsync", True] / mine))
    m = medians.get
    if m(("book-cs50", "bfxsync", False)):
        mine = m(("book-cs50", "bfxsync", False))
        if m(("book-cs50", "bfxapi", False)):
            targets.append(("book-cs50 >= 2.0x bitfinex-api-py", mine / m(("book-cs50", "bfxapi", False)) >= 2.0))
        if m(("book-cs50", "wsapp-raw", False)):
            targets.append(("book-cs50 >= 1.0x bare WebSocketApp", mine / m(("book-cs50", "wsapp-raw", False)) >= 1.0))
        targets.append(("book-cs50 >= 300,000 updates/s (moonshot)", mine >= 300_000))
        if m(("book-cs50", "bfxsync", True)):
            targets.append(("wss:// >= 0.8x ws:// (book-cs50)", m(("book-cs50", "bfxsync", True)) / mine >= 0.8))
    if m(("book-cs1", "bfxsync", False)) and m(("book-cs1", "bfxapi", False)):
        targets.append(("book-cs1 >= 1.3x bitfinex-api-py",
                        m(("book-cs1", "bfxsync", False)) / m(("book-cs1", "bfxapi", False)) >= 1.3))
    if lat.get("lat-wsapp") and lat.get("lat-bfxsync"):
        (b50, b99), (s50, s99) = lat["lat-wsapp"], lat["lat-bfxsync"]
        print("latency at 5,000 msg/s, send -> callback, medians of %d rounds of %g s" % (args.rounds, args.latency_seconds))
        print("  bare WebSocketApp + json.loads  p50 %6.1f us  p99 %7.1f us" % (b50, b99))
        print("  bfxsync                         p50 %6.1f us  p99 %7.1f us   (p50 %.2fx bare)" % (s50, s99, s50 / b50))
        targets.append(("latency p50 <= 1.2x bare", s50 <= 1.2 * b50))
        targets.append(("latency p99 <= 0.5 ms", s99 <= 500))
    if mem:
        rss0, rss1, threads0, threads1, py0, py1 = mem
        print("memory over %d book updates (cs every 50): RSS %.1f -> %.1f MB (%+.2f MB), threads %d -> %d"
              " (Python threads %d -> %d)" % (args.memory_updates, rss0 / 1024, rss1 / 1024, (rss1 - rss0) / 1024,
                                                threads0, threads1, py0, py1))
        targets.append(("RSS growth <= 5 MB", rss1 - rss0 <= KB_5MB))
        targets.append(("thread count constant", threads0 == threads1))
    print("targets")
    for name, ok in targets:
        print("  %-42s %s" % (name, verdict(ok)))
    for note in notes:
        print("note:", note)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated: " + ", ".join(SCENARIOS))
    ap.add_argument("--peers", default=",".join(PEERS), help="comma-separated, empty for none")
    ap.add_argument("--no-tls", action="store_true", help="skip bfxsync over wss://")
    ap.add_argument("--latency-seconds", type=float, default=5.0, help="per round; 0 skips the latency runs")
    ap.add_argument("--memory-updates", type=int, default=1_000_000, help="0 skips the memory run")
    args = ap.parse_args()
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    notes = []
    wanted = [p for p in args.peers.split(",") if p]
    python, usable = peer_python(notes) if wanted else (sys.executable, [])
    peers = [p for p in wanted if p in usable]
    with tempfile.TemporaryDirectory() as directory:
        tls_files = None if args.no_tls else make_cert(directory)
        servers, processes = {}, []
        try:
            for scenario in args.scenarios:
                channel, cs_every = SCENARIOS[scenario]
                extra = ["--channel", channel, "--messages", str(args.messages), "--cs-every", str(cs_every)]
                for tls in (False, True) if tls_files else (False,):
                    process, servers[scenario, tls] = start_server(extra, tls_files if tls else None)
                    processes.append(process)
            rates = throughput(args, python, peers, servers, tls_files[2] if tls_files else None)
        finally:
            for process in processes:
                process.kill()
    lat = latency(args) if args.latency_seconds else {}
    mem = memory(args) if args.memory_updates else None
    report(args, rates, lat, mem, notes, peers)


if __name__ == "__main__":
    main()
