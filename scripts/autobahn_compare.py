#!/usr/bin/env python3
"""Compare Autobahn|Testsuite results against a locked expected file.

wstest exits 0 even when cases fail, so its <outdir>/index.json is the only
verdict. Its format is

    {agent: {case_id: {behavior, behaviorClose, duration, remoteCloseCode, reportfile}}}

This script normalizes one agent's results to

    {case_id: {"behavior": ..., "behaviorClose": ..., "remoteCloseCode": ...}}

sorted by case id in natural numeric order (1.1.9 before 1.1.10), with
durations and report file names stripped.

Modes:
  compare  print every difference from the expected file and a summary line;
           exit 1 on any difference, or on any case whose behavior or
           behaviorClose is anything but OK or INFORMATIONAL (FAILED,
           NON-STRICT, WRONG CODE, UNCLEAN, UNIMPLEMENTED, ...), even if the
           expected file says so too.
  update   write the normalized results to the expected file (indent 2,
           trailing newline). Prints the same summary and still exits 1 on the
           same failing cases, so an update cannot hide a failure.

Exit codes: 0 ok, 1 difference or failing case, 2 usage or input error.
Standard library only.
"""

import argparse
import json
import os
import re
import sys

FIELDS = ("behavior", "behaviorClose", "remoteCloseCode")
# Summary order; any other behavior seen (e.g. UNIMPLEMENTED) is appended.
BEHAVIOR_ORDER = ("OK", "INFORMATIONAL", "NON-STRICT", "FAILED")
# An allow-list: any verdict not named here fails, including ones this
# script has never seen.
GOOD_BEHAVIORS = ("OK", "INFORMATIONAL")


def case_key(case_id):
    """Natural sort key: '1.1.10' sorts after '1.1.9'; non-numeric parts sort after numbers."""
    key = []
    for part in re.split(r"[.]", str(case_id)):
        if part.isdigit():
            key.append((0, int(part), ""))
        else:
            key.append((1, 0, part))
    return tuple(key)


def sorted_cases(cases):
    return {cid: cases[cid] for cid in sorted(cases, key=case_key)}


class InputError(Exception):
    pass


def load_json(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError("%s not found: %s" % (what, path)) from None
    except (OSError, ValueError) as e:
        raise InputError("cannot read %s %s: %s" % (what, path, e)) from None


def load_results(index_path, agent):
    """Return (normalized cases, raw cases) for one agent of an index.json."""
    if os.path.isdir(index_path):
        index_path = os.path.join(index_path, "index.json")
    index = load_json(index_path, "Autobahn results")
    if not isinstance(index, dict) or not index:
        raise InputError("%s has no agents (did wstest run any case?)" % index_path)
    if agent is None:
        if len(index) != 1:
            raise InputError(
                "%s has several agents (%s); pick one with --agent"
                % (index_path, ", ".join(sorted(index)))
            )
        agent = next(iter(index))
    if agent not in index:
        raise InputError(
            "agent %r not in %s (agents: %s)" % (agent, index_path, ", ".join(sorted(index)) or "none")
        )
    raw = index[agent]
    if not isinstance(raw, dict):
        raise InputError("agent %r in %s is not an object" % (agent, index_path))
    normalized = {}
    for cid, res in raw.items():
        if not isinstance(res, dict):
            raise InputError("case %s in %s is not an object" % (cid, index_path))
        normalized[cid] = {f: res.get(f) for f in FIELDS}
    return sorted_cases(normalized), raw, os.path.dirname(os.path.abspath(index_path))


def load_expected(path):
    data = load_json(path, "expected results")
    if not isinstance(data, dict):
        raise InputError("expected file %s is not a JSON object" % path)
    out = {}
    for cid, res in data.items():
        if not isinstance(res, dict):
            raise InputError("case %s in %s is not an object" % (cid, path))
        out[cid] = {f: res.get(f) for f in FIELDS}
    return sorted_cases(out)


def fmt(v):
    return json.dumps(v)


def diff(expected, actual):
    """List of human-readable difference lines, in case order."""
    lines = []
    for cid in sorted(set(expected) | set(actual), key=case_key):
        if cid not in actual:
            e = expected[cid]
            lines.append(
                "case %s: missing from results (expected behavior %s, behaviorClose %s, remoteCloseCode %s)"
                % (cid, e["behavior"], e["behaviorClose"], fmt(e["remoteCloseCode"]))
            )
        elif cid not in expected:
            a = actual[cid]
            lines.append(
                "case %s: extra case not in expected file (got behavior %s, behaviorClose %s, remoteCloseCode %s)"
                % (cid, a["behavior"], a["behaviorClose"], fmt(a["remoteCloseCode"]))
            )
        else:
            for f in FIELDS:
                if expected[cid][f] != actual[cid][f]:
                    lines.append(
                        "case %s: %s: expected %s, got %s"
                        % (cid, f, fmt(expected[cid][f]), fmt(actual[cid][f]))
                    )
    return lines


def bad_cases(actual, raw, outdir):
    """Lines for cases that fail regardless of the expected file."""
    lines = []
    for cid, res in actual.items():
        why = []
        if res["behavior"] not in GOOD_BEHAVIORS:
            why.append("behavior %s" % res["behavior"])
        if res["behaviorClose"] not in GOOD_BEHAVIORS:
            why.append("behaviorClose %s" % res["behaviorClose"])
        if why:
            report = (raw.get(cid) or {}).get("reportfile")
            where = " (report: %s)" % os.path.relpath(os.path.join(outdir, report)) if report else ""
            lines.append("case %s: %s%s" % (cid, ", ".join(why), where))
    return lines


def summary(label, actual):
    counts = {b: 0 for b in BEHAVIOR_ORDER}
    for res in actual.values():
        b = res["behavior"]
        counts[b] = counts.get(b, 0) + 1
    parts = ", ".join("%s %d" % (b, n) for b, n in counts.items())
    return "%s: %d cases: %s" % (label, len(actual), parts)


def write_expected(path, actual):
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(actual, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Normalize Autobahn|Testsuite results and compare them with (or write) an expected file."
    )
    p.add_argument("mode", choices=("compare", "update"))
    p.add_argument("results", help="wstest outdir, or the path of its index.json")
    p.add_argument("expected", help="expected-results JSON file (read in compare mode, written in update mode)")
    p.add_argument("--agent", help="agent name in index.json (default: the only agent present)")
    p.add_argument("--label", default="autobahn", help="prefix for output lines, e.g. 'autobahn server'")
    args = p.parse_args(argv)
    label = args.label

    try:
        actual, raw, outdir = load_results(args.results, args.agent)
        expected = None
        if args.mode == "compare":
            expected = load_expected(args.expected)
    except InputError as e:
        print("%s: ERROR: %s" % (label, e), file=sys.stderr)
        if args.mode == "compare" and "expected results not found" in str(e):
            print(
                "%s: create it from a real run with AUTOBAHN_UPDATE=1, review it, and commit it" % label,
                file=sys.stderr,
            )
        return 2

    failed = False
    if args.mode == "update":
        write_expected(args.expected, actual)
        print("%s: wrote %d cases to %s" % (label, len(actual), args.expected))
    else:
        differences = diff(expected, actual)
        for line in differences:
            print("%s: DIFF %s" % (label, line))
        if differences:
            failed = True
            print(
                "%s: %d difference(s) from %s (if intended, rerun with AUTOBAHN_UPDATE=1 and commit the file)"
                % (label, len(differences), args.expected)
            )

    bad = bad_cases(actual, raw, outdir)
    for line in bad:
        print("%s: BAD %s" % (label, line))
    if bad:
        failed = True
        print(
            "%s: %d case(s) with a behavior or behaviorClose other than OK or INFORMATIONAL; these fail the run even when expected"
            % (label, len(bad))
        )

    print(summary(label, actual))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
