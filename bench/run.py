#!/usr/bin/env python3
"""Benchmark `stratumguard analyze` against a bare libpcap read loop.

What it does, in order:

1. builds the release binaries (`stratumguard` and the `pcap_read_loop`
   example, which reads packets with libpcap and only counts them);
2. generates the synthetic corpus with the shared `gen_pcap.py` into
   `bench/corpus/` unless a file of that name is already there;
3. for each corpus size, reads the file once untimed so both contenders start
   from a warm page cache, then runs the bare loop and `analyze --json`
   alternately for N rounds, swapping which goes first every round (and
   `ndpiReader` once per round when it is installed), all pinned to one
   core, taking the wall time, CPU time and peak RSS of every child;
4. prints medians, the speed fraction (the median over rounds of bare-loop
   time / analyze time, both from this same run), throughput, peak RSS,
   and recall / false positives of `analyze` against the generator's
   `*.truth.json`.

Slowness never fails the script: it exits 1 only when a program failed
(non-zero exit, unreadable output), because a shared machine can be slow
for reasons that have nothing to do with the code.

Python standard library only.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS_DIR = REPO / "bench" / "corpus"

# The goals, printed beside the measurements; never used to fail.
GOAL_SPEED_FRACTION = 0.6
GOAL_RSS_MIB = 64.0

DEFAULT_SIZES = "100,1024"
DEFAULT_ROUNDS = 5
QUICK_SIZE_MB = 20
QUICK_ROUNDS = 2

MIB = 1 << 20


class BrokenRun(Exception):
    """A program under test failed; the numbers of this run mean nothing."""


# ------------------------------------------------------------------ setup

def find_generator():
    env = os.environ.get("STRATUMGUARD_GEN_PCAP")
    path = Path(env) if env else REPO.parent / "shared" / "bench" / "gen_pcap.py"
    if not path.is_file():
        raise BrokenRun(
            "corpus generator not found at %s (set STRATUMGUARD_GEN_PCAP)" % path)
    return path


def target_dir():
    env = os.environ.get("CARGO_TARGET_DIR")
    if not env:
        return REPO / "target"
    path = Path(env)
    return path if path.is_absolute() else REPO / path


def build():
    cmd = ["cargo", "build", "--release", "--bin", "stratumguard",
           "--example", "pcap_read_loop"]
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    if subprocess.run(cmd, cwd=REPO).returncode != 0:
        raise BrokenRun("cargo build failed")


def corpus_paths(size_mb, seed):
    stem = "stratum-bench-%dm-seed%d" % (size_mb, seed)
    return CORPUS_DIR / (stem + ".pcap"), CORPUS_DIR / (stem + ".truth.json")


def ensure_corpus(size_mb, seed):
    """Generates the corpus unless both files exist (the generator writes the
    pcap under a temporary name and renames it, so a present file is whole)."""
    pcap, truth = corpus_paths(size_mb, seed)
    if pcap.is_file() and truth.is_file():
        return pcap, truth
    CORPUS_DIR.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(find_generator()), "--size-mb", str(size_mb),
           "--seed", str(seed), "--out", str(pcap), "--truth", str(truth)]
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    if subprocess.run(cmd).returncode != 0:
        raise BrokenRun("corpus generation failed for %d MiB" % size_mb)
    return pcap, truth


def pin_prefix(cpu):
    if cpu is None:
        return [], "not pinned"
    if shutil.which("taskset"):
        return ["taskset", "-c", str(cpu)], "taskset -c %d" % cpu
    return [], "not pinned (taskset not installed)"


# ------------------------------------------------------------------ running

class Run:
    __slots__ = ("wall", "cpu", "rss_mib", "stdout")

    def __init__(self, wall, cpu, rss_mib, stdout):
        self.wall, self.cpu, self.rss_mib, self.stdout = wall, cpu, rss_mib, stdout


def find_gnu_time():
    """GNU time, if installed, to read a child's peak RSS without our own.

    A process started from Python inherits Python's resident size as its
    starting high-water mark (Linux carries ru_maxrss across fork and exec),
    so wait4 on a direct child can never report less than this script's
    ~15 MiB. GNU time is a small C program: the program it forks starts near
    zero, and its %M is that program's own peak.
    """
    path = shutil.which("time")
    if not path:
        return None
    try:
        text = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    except OSError:
        return None
    return path if "GNU" in text else None


GNU_TIME = find_gnu_time()


def run_child(cmd, what):
    """Runs cmd with stdout and stderr in temporary files; returns its wall
    time, CPU time (user + system, of it and whatever it waited for, so
    GNU time's own share of a millisecond is in it) and peak RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as rss:
        full = cmd
        if GNU_TIME:
            full = [GNU_TIME, "-f", "%M", "-o", rss.name, "--"] + cmd
        start = time.perf_counter()
        child = subprocess.Popen(full, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
        rss_text = rss.read().strip()
    if child.returncode != 0:
        raise BrokenRun("%s exited with %d: %s\n%s"
                        % (what, child.returncode, " ".join(cmd), stderr.strip()[-2000:]))
    # Both GNU time's %M and ru_maxrss are in KiB on Linux.
    if GNU_TIME:
        try:
            rss_kib = int(rss_text.splitlines()[-1])
        except (IndexError, ValueError):
            raise BrokenRun("GNU time gave no peak RSS for %s: %r" % (what, rss_text))
    else:
        rss_kib = usage.ru_maxrss
    cpu = usage.ru_utime + usage.ru_stime
    return Run(wall, cpu, rss_kib / 1024.0, stdout)


def parse_bare(text, what):
    fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
    try:
        return int(fields["packets"]), int(fields["bytes"])
    except (KeyError, ValueError):
        raise BrokenRun("%s printed no packet count: %r" % (what, text[:200]))


def parse_analyze(text, what):
    """Pools reported by `analyze --json`: {(server_ip, port): set(client ips)}."""
    pools, stats, errors = {}, None, []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            raise BrokenRun("%s: line %d of its output is not JSON: %r" % (what, n, line[:200]))
        kind = obj.get("event_type")
        if kind == "mining_pool":
            try:
                key = (norm_ip(obj["dest_ip"]), int(obj["dest_port"]))
                clients = {norm_ip(c) for c in obj["mining"]["clients"]}
            except (KeyError, TypeError, ValueError):
                raise BrokenRun("%s: mining_pool line %d lacks dest_ip/dest_port/"
                                "mining.clients: %r" % (what, n, line[:200]))
            pools.setdefault(key, set()).update(clients)
        elif kind == "stats":
            stats = obj
        elif kind == "error":
            errors.append(obj)
    if errors:
        raise BrokenRun("%s reported errors: %s" % (what, errors[:3]))
    if stats is None:
        raise BrokenRun("%s printed no stats line" % what)
    return pools, stats


def parse_ndpi_csv(path):
    """Flows nDPI labelled Mining, as {(ip, port), ...} for both endpoints."""
    flows = []
    with open(path, newline="") as fh:
        header = None
        for line in fh:
            cols = line.rstrip("\n").split(",")
            if header is None:
                header = {name.lstrip("#"): i for i, name in enumerate(cols)}
                continue
            try:
                proto = cols[header["ndpi_proto"]]
                a = (norm_ip(cols[header["src_ip"]]), int(cols[header["src_port"]]))
                b = (norm_ip(cols[header["dst_ip"]]), int(cols[header["dst_port"]]))
            except (KeyError, IndexError, ValueError):
                continue
            if "mining" in proto.lower():
                flows.append((a, b))
    return flows


def norm_ip(text):
    return text.strip().strip("[]").lower()


def split_endpoint(text):
    """"ip:port" or "[v6]:port" -> (ip, port)."""
    host, _, port = text.rpartition(":")
    return norm_ip(host), int(port)


# ------------------------------------------------------------------ scoring

def load_truth(path):
    with open(path) as fh:
        truth = json.load(fh)
    stratum = [(split_endpoint(f["pool"]), split_endpoint(f["client"])[0], f)
               for f in truth["stratum_flows"]]
    near = {split_endpoint(f["server"]): f["kind"] for f in truth["near_miss_flows"]}
    return truth, stratum, near


def score_analyze(pools, stratum, near):
    """Recall and false positives of analyze's report against the truth."""
    found = [f for pool, client, f in stratum if client in pools.get(pool, ())]
    missed = [f for pool, client, f in stratum if client not in pools.get(pool, ())]
    truth_pools = {pool for pool, _, _ in stratum}
    false = sorted((ip, port, near.get((ip, port), "background"))
                   for (ip, port) in pools if (ip, port) not in truth_pools)
    return found, missed, false


def score_ndpi(flows, stratum, near):
    truth_flows = {(pool, client) for pool, client, _ in stratum}
    truth_pools = {pool for pool, _, _ in stratum}
    found, false = set(), 0
    for a, b in flows:
        hit = None
        for server, client in ((b, a), (a, b)):
            if (server, client[0]) in truth_flows:
                hit = (server, client[0])
        if hit:
            found.add(hit)
        elif a not in truth_pools and b not in truth_pools:
            false += 1
    return len(found), false


# ------------------------------------------------------------------ one size

def bench_size(size_mb, seed, rounds, bins, pin, use_ndpi):
    pcap, truth_path = ensure_corpus(size_mb, seed)
    truth, stratum, near = load_truth(truth_path)
    file_bytes = pcap.stat().st_size

    bare_cmd = pin + [str(bins["bare"]), str(pcap)]
    analyze_cmd = pin + [str(bins["analyze"]), "analyze", "--json", str(pcap)]
    print("\n== %d MiB: %s" % (size_mb, pcap), file=sys.stderr, flush=True)

    # Warm the page cache so the first timed run is not the only one that
    # pays for the disk.
    warm = run_child(bare_cmd, "bare loop (warm-up)")
    packets, _ = parse_bare(warm.stdout, "bare loop")
    if packets != truth["packets"]:
        raise BrokenRun("bare loop read %d packets, the truth file says %d"
                        % (packets, truth["packets"]))

    bare, analyze, ndpi = [], [], []
    result = None
    ndpi_score = None
    with tempfile.TemporaryDirectory() as tmp:
        ndpi_csv = Path(tmp) / "ndpi.csv"
        ndpi_cmd = pin + ["ndpiReader", "-q", "-i", str(pcap), "-C", str(ndpi_csv)]
        for r in range(rounds):
            # Odd rounds run analyze first, so neither contender always
            # follows the other (or ndpiReader).
            first_bare = r % 2 == 0
            if first_bare:
                b = run_child(bare_cmd, "bare loop")
            a = run_child(analyze_cmd, "stratumguard analyze")
            if not first_bare:
                b = run_child(bare_cmd, "bare loop")
            parse_bare(b.stdout, "bare loop")
            bare.append(b)

            pools, stats = parse_analyze(a.stdout, "stratumguard analyze")
            counted = stats.get("packets", (stats.get("stats") or {}).get("packets"))
            if counted not in (None, packets):
                raise BrokenRun("analyze counted %s packets, the file has %d"
                                % (counted, packets))
            score = score_analyze(pools, stratum, near)
            if result is not None and [len(x) for x in score] != [len(x) for x in result]:
                raise BrokenRun("analyze gave different verdicts on the same file "
                                "in two rounds")
            result = score
            analyze.append(a)

            if use_ndpi:
                n = run_child(ndpi_cmd, "ndpiReader")
                ndpi.append(n)
                ndpi_score = score_ndpi(parse_ndpi_csv(ndpi_csv), stratum, near)

            print("  round %d/%d: bare %.3fs  analyze %.3fs (%.1f MiB)%s"
                  % (r + 1, rounds, b.wall, a.wall, a.rss_mib,
                     "  ndpiReader %.3fs" % ndpi[-1].wall if use_ndpi else ""),
                  file=sys.stderr, flush=True)

    found, missed, false = result
    med = lambda runs: statistics.median(x.wall for x in runs)
    med_cpu = lambda runs: statistics.median(x.cpu for x in runs)
    row = {
        "size_mib": size_mb,
        "file_bytes": file_bytes,
        "packets": packets,
        "rounds": rounds,
        "bare_s": med(bare),
        "analyze_s": med(analyze),
        "bare_cpu_s": med_cpu(bare),
        "analyze_cpu_s": med_cpu(analyze),
        "bare_rss_mib": max(x.rss_mib for x in bare),
        "analyze_rss_mib": max(x.rss_mib for x in analyze),
        "stratum_flows": len(stratum),
        "found": len(found),
        "missed": [f["id"] + " " + f["dialect"] + " " + f["pool"] for f in missed],
        "false_positives": ["%s:%d (%s)" % f for f in false],
        "analyze_stats": stats,
    }
    # The fraction is the median of each round's own ratio: the two runs of a
    # round are seconds apart, so a burst of other work on the machine that
    # slows both cancels out, where a ratio of two medians would keep it.
    row["speed_fraction"] = statistics.median(b.wall / a.wall for b, a in zip(bare, analyze))
    row["cpu_fraction"] = statistics.median(b.cpu / a.cpu for b, a in zip(bare, analyze))
    row["round_fractions"] = [round(b.wall / a.wall, 3) for b, a in zip(bare, analyze)]
    if use_ndpi:
        row["ndpi_s"] = med(ndpi)
        row["ndpi_rss_mib"] = max(x.rss_mib for x in ndpi)
        row["ndpi_found"], row["ndpi_false"] = ndpi_score
    return row


# ------------------------------------------------------------------ report

def print_report(rows, pin_note, rounds):
    out = sys.stdout
    print("\nstratumguard analyze vs bare libpcap read loop (%s, median of %d "
          "alternating rounds; fraction = median of the rounds' bare/analyze; peak RSS %s)"
          % (pin_note, rounds, "by GNU time" if GNU_TIME else "by wait4, an upper bound"),
          file=out)
    head = ("size", "packets", "bare s", "analyze s", "fraction", "MiB/s", "pkt/s",
            "RSS MiB", "recall", "false")
    fmt = "%-9s %10s %8s %9s %8s %7s %10s %7s %7s %5s"
    print(fmt % head, file=out)
    for r in rows:
        print(fmt % ("%d MiB" % r["size_mib"], r["packets"], "%.3f" % r["bare_s"],
                     "%.3f" % r["analyze_s"], "%.2f" % r["speed_fraction"],
                     "%.0f" % (r["file_bytes"] / MIB / r["analyze_s"]),
                     "%.0f" % (r["packets"] / r["analyze_s"]),
                     "%.1f" % r["analyze_rss_mib"],
                     "%d/%d" % (r["found"], r["stratum_flows"]),
                     len(r["false_positives"])), file=out)
    print("goals: fraction >= %.1f, RSS <= %.0f MiB, every Stratum flow found, "
          "no false positives" % (GOAL_SPEED_FRACTION, GOAL_RSS_MIB), file=out)

    print("\nCPU time (user + system; less sensitive to other work on the machine "
          "than wall time)", file=out)
    fmt_cpu = "%-9s %10s %13s %12s"
    print(fmt_cpu % ("size", "bare cpu s", "analyze cpu s", "cpu fraction"), file=out)
    for r in rows:
        print(fmt_cpu % ("%d MiB" % r["size_mib"], "%.3f" % r["bare_cpu_s"],
                         "%.3f" % r["analyze_cpu_s"], "%.2f" % r["cpu_fraction"]), file=out)

    for r in rows:
        print("%d MiB fraction by round: %s"
              % (r["size_mib"], " ".join("%.2f" % f for f in r["round_fractions"])), file=out)
    for r in rows:
        if r["missed"]:
            print("%d MiB missed: %s" % (r["size_mib"], "; ".join(r["missed"])), file=out)
        if r["false_positives"]:
            print("%d MiB false: %s" % (r["size_mib"], "; ".join(r["false_positives"])),
                  file=out)

    if any("ndpi_s" in r for r in rows):
        print("\nndpiReader for reference (same file, same core, one run per round)",
              file=out)
        fmt2 = "%-9s %9s %8s %7s %8s %11s"
        print(fmt2 % ("size", "ndpi s", "fraction", "RSS MiB", "Mining", "false flows"), file=out)
        for r in rows:
            if "ndpi_s" in r:
                print(fmt2 % ("%d MiB" % r["size_mib"], "%.3f" % r["ndpi_s"],
                              "%.2f" % (r["bare_s"] / r["ndpi_s"]),
                              "%.1f" % r["ndpi_rss_mib"],
                              "%d/%d" % (r["ndpi_found"], r["stratum_flows"]),
                              r["ndpi_false"]), file=out)

    if len(rows) > 1:
        print("\nscaling: cost per MiB should stay flat, and so should memory", file=out)
        fmt3 = "%-9s %14s %14s %14s %13s"
        print(fmt3 % ("size", "analyze ms/MiB", "bare ms/MiB", "analyze RSS", "bare RSS"),
              file=out)
        for r in rows:
            mib = r["file_bytes"] / MIB
            print(fmt3 % ("%d MiB" % r["size_mib"], "%.2f" % (1000 * r["analyze_s"] / mib),
                          "%.2f" % (1000 * r["bare_s"] / mib),
                          "%.1f MiB" % r["analyze_rss_mib"], "%.1f MiB" % r["bare_rss_mib"]),
                  file=out)
        lo, hi = rows[0], rows[-1]
        per = lambda r: r["analyze_s"] / r["file_bytes"]
        print("analyze time per MiB, %d MiB vs %d MiB: x%.2f; RSS x%.2f"
              % (hi["size_mib"], lo["size_mib"], per(hi) / per(lo),
                 hi["analyze_rss_mib"] / lo["analyze_rss_mib"]), file=out)


def machine_summary():
    info = {"nproc": os.cpu_count()}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                info["mem_gib"] = round(int(line.split()[1]) / (1 << 20), 1)
                break
    except OSError:
        pass
    info["kernel"] = os.uname().release
    try:
        info["rustc"] = subprocess.run(["rustc", "--version"], capture_output=True,
                                       text=True).stdout.strip()
    except OSError:
        pass
    return info


# ------------------------------------------------------------------ main

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default=DEFAULT_SIZES,
                   help="corpus sizes in MiB, comma-separated (default %(default)s)")
    p.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                   help="alternating rounds per size (default %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="one %d MiB corpus, %d rounds" % (QUICK_SIZE_MB, QUICK_ROUNDS))
    p.add_argument("--seed", type=int, default=1, help="corpus seed (default %(default)s)")
    p.add_argument("--cpu", type=int, default=0,
                   help="core to pin every run to (default %(default)s; -1: no pinning)")
    p.add_argument("--no-build", action="store_true",
                   help="use the binaries already in the target directory")
    p.add_argument("--analyze-bin", metavar="PATH",
                   help="time this stratumguard binary instead of the one built here "
                        "(e.g. to compare two builds)")
    p.add_argument("--no-ndpi", action="store_true", help="skip ndpiReader even if installed")
    p.add_argument("--json-out", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)

    if args.quick:
        sizes, rounds = [QUICK_SIZE_MB], QUICK_ROUNDS
    else:
        try:
            sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
        except ValueError:
            p.error("--sizes takes whole MiB numbers, e.g. 100,1024")
        rounds = args.rounds
    if not sizes or min(sizes) <= 0 or rounds < 1:
        p.error("need at least one positive size and one round")

    pin, pin_note = pin_prefix(None if args.cpu < 0 else args.cpu)
    if not GNU_TIME:
        print("bench: GNU time not installed: peak RSS is taken from wait4 and includes "
              "this script's own size (an upper bound)", file=sys.stderr)
    use_ndpi = not args.no_ndpi and shutil.which("ndpiReader") is not None
    release = target_dir() / "release"
    bins = {"bare": release / "examples" / "pcap_read_loop",
            "analyze": Path(args.analyze_bin) if args.analyze_bin
            else release / "stratumguard"}

    try:
        if not args.no_build:
            build()
        for b in bins.values():
            if not b.is_file():
                raise BrokenRun("%s is missing (build it, or drop --no-build)" % b)
        rows = [bench_size(s, args.seed, rounds, bins, pin, use_ndpi) for s in sizes]
    except BrokenRun as e:
        print("bench: broken run: %s" % e, file=sys.stderr)
        return 1

    print_report(rows, pin_note, rounds)
    if not use_ndpi:
        print("\n(ndpiReader not run: %s)" % ("--no-ndpi" if args.no_ndpi else "not installed"))
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump({"machine": machine_summary(), "pinning": pin_note, "rows": rows},
                      fh, indent=1)
            fh.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
