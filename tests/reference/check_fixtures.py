#!/usr/bin/python3
"""ctest reference_fixtures: reruns every script of tests/reference/fixtures.txt whose tool is installed, in a
temporary copy of tests/reference, and compares what it writes with the committed fixtures (fixtures.txt says how).
A committed fixture that its script no longer reproduces fails the test, naming the file and the first difference.

Usage: /usr/bin/python3 tests/reference/check_fixtures.py --work DIR [--data DIR] [--python EXE] [--node EXE]
  --work    scratch directory (emptied first); the copy is DIR/reference
  --data    ../shared/data (default: next to the repository); the copy sees it at the same relative place
  --python  interpreter for python3/numpy/torch scripts (default /usr/bin/python3)
  --node    node executable for node scripts (default: node on PATH)
Environment: PISSA_REQUIRE_ALL=1 makes a missing tool or data file a failure instead of a skip.
Exit status: 0 all compared scripts reproduce their fixtures, 1 a failure, 77 no script could run (all skipped).
Standard library only, so that it runs (and reports what is missing) without numpy or torch.
"""
import argparse
import fnmatch
import glob
import json
import math
import os
import shutil
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = ("python3", "numpy", "torch", "jinja2", "node")
SCRIPT_EXT = (".py", ".js", ".mjs", ".cjs")
IGNORED = ("__pycache__", "node_modules")  # not committed (git-ignored), never compared


class Mismatch(Exception):
    pass


# ---- the manifest ----

def read_manifest(path):
    entries, helpers, inputs = [], set(), []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = [x.strip() for x in line.split(" | ")]
            where = f"{path}:{lineno}"
            if fields[0] in ("helper", "input"):
                if len(fields) != 2:
                    sys.exit(f"{where}: a {fields[0]} line is '{fields[0]} | FILE...'")
                for f in fields[1].split():
                    if fields[0] == "helper":
                        helpers.add(f)
                    else:
                        inputs.append((f, where))
                continue
            if len(fields) != 4:
                sys.exit(f"{where}: expected 'TOOL | SCRIPT [ARGS] | OUTPUTS | COMPARE', got {len(fields)} fields")
            tool, command, outputs, compare = fields
            if tool not in TOOLS and not (tool.startswith("test:") and len(tool) > 5):
                sys.exit(f"{where}: unknown tool '{tool}' (one of {', '.join(TOOLS)}, test:NAME, helper, input)")
            parse_rule(compare, where)
            outs = []
            for o in outputs.split():
                pattern, _, rule = o.partition("=")
                if rule:
                    parse_rule(rule, where)
                outs.append((pattern, rule or compare))
            argv = command.split()
            entries.append({"where": where, "tool": tool, "script": argv[0], "args": argv[1:], "outputs": outs})
    return entries, helpers, inputs


def parse_rule(rule, where):
    if rule == "exact":
        return ("exact", 0.0)
    kind, _, tol = rule.partition(":")
    if kind == "json-except" and tol:
        return (kind, tuple(tol.split(",")))
    try:
        if kind in ("rel", "abs") and float(tol) >= 0:
            return (kind, float(tol))
    except ValueError:
        pass
    sys.exit(f"{where}: bad comparison '{rule}' (exact, rel:TOL, abs:TOL or json-except:KEY,...)")


def braces(pattern):
    """'{a,b}/x*' -> ['a/x*', 'b/x*'] (the shell's brace expansion, which glob lacks)."""
    i = pattern.find("{")
    if i < 0:
        return [pattern]
    j = pattern.index("}", i)
    return [p for alt in pattern[i + 1:j].split(",") for p in braces(pattern[:i] + alt + pattern[j + 1:])]


def committed(pattern):
    """The committed files PATTERN (globs, braces) matches, relative to this folder."""
    return sorted({os.path.relpath(p, HERE) for b in braces(pattern) for p in glob.glob(os.path.join(HERE, b))
                   if os.path.isfile(p)})


def expand_outputs(entry):
    """Committed files of ENTRY, each with its rule (a later pattern overrides an earlier one)."""
    files = {}
    for pattern, rule in entry["outputs"]:
        matches = committed(pattern)
        if not matches:
            raise Mismatch(f"{entry['where']}: output '{pattern}' matches no committed file")
        for p in matches:
            files[p] = parse_rule(rule, entry["where"])
    return files


# ---- tools ----

def tool_missing(tool, script, python, node):
    """None if TOOL works here for SCRIPT, else what is missing (named as a Debian package or a command)."""
    if tool == "node":
        exe = node or shutil.which("node")
        if not (exe and subprocess.run([exe, "--version"], capture_output=True).returncode == 0):
            return "node (Debian: nodejs), for the node reference scripts"
        folder = os.path.dirname(os.path.join(HERE, script))
        rel = os.path.relpath(folder, os.path.join(HERE, "..", ".."))
        package = os.path.join(folder, "package.json")
        if os.path.exists(package) and not os.path.isdir(os.path.join(folder, "node_modules")):
            return f"{rel}/node_modules (cd {rel} && npm ci --ignore-scripts)"
        # package.json's "engines": {"node": ">=X.Y.Z"} (transformers.js 4 loads sharp, which needs node 20.9)
        want = json.load(open(package)).get("engines", {}).get("node", "") if os.path.exists(package) else ""
        if want.startswith(">="):
            version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip().lstrip("v")
            have, need = (tuple(int(x) for x in v.split(".")[:3]) for v in (version, want[2:]))
            if have < need:
                return f"node {want} (this node is {version}), for {rel}'s packages (engines in its package.json)"
        return None
    imports = {"python3": "", "numpy": "import numpy", "torch": "import numpy, torch", "jinja2": "import jinja2"}[tool]
    if not os.path.exists(python):
        return f"{python}, for the Python reference scripts"
    if subprocess.run([python, "-c", imports], capture_output=True).returncode != 0:
        pkg = {"numpy": "python3-numpy", "torch": "python3-numpy python3-torch", "jinja2": "python3-jinja2"}.get(
            tool, "python3")
        return f"{python} with {tool} (Debian: {pkg}), for the reference scripts that use it"
    return None


# ---- comparisons ----

def close(got, want, scale, kind, tol):
    if math.isnan(want) or math.isnan(got):
        return math.isnan(want) and math.isnan(got)
    if math.isinf(want) or math.isinf(got):
        return got == want
    bound = tol * scale if kind == "rel" else tol
    return abs(got - want) <= bound


def compare_numbers(got, want, kind, tol, what):
    if len(got) != len(want):
        raise Mismatch(f"{what}: {len(got)} numbers, committed {len(want)}")
    scale = max((abs(x) for x in want if math.isfinite(x)), default=0.0)
    for i, (g, w) in enumerate(zip(got, want)):
        if not close(g, w, scale, kind, tol):
            raise Mismatch(f"{what}[{i}]: {g!r}, committed {w!r} (scale {scale:.3g}, {kind}:{tol:g})")


def compare_json(got, want, kind, tol, what, scale=None):
    if isinstance(want, bool) or want is None or isinstance(want, str):
        if got != want or type(got) is not type(want):
            raise Mismatch(f"{what}: {got!r}, committed {want!r}")
    elif isinstance(want, (int, float)):
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            raise Mismatch(f"{what}: {got!r}, committed {want!r}")
        if isinstance(want, int) and isinstance(got, int):
            if got != want:
                raise Mismatch(f"{what}: {got}, committed {want}")
        elif not close(float(got), float(want), abs(want) if scale is None else scale, kind, tol):
            raise Mismatch(f"{what}: {got!r}, committed {want!r} ({kind}:{tol:g})")
    elif isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            raise Mismatch(f"{what}: a list of {len(got) if isinstance(got, list) else '-'}, committed {len(want)}")
        nums = [abs(x) for x in want if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)]
        s = max(nums) if nums else None
        for i, (g, w) in enumerate(zip(got, want)):
            compare_json(g, w, kind, tol, f"{what}[{i}]", s)
    elif isinstance(want, dict):
        if not isinstance(got, dict) or list(got) != list(want):
            raise Mismatch(f"{what}: keys {list(got) if isinstance(got, dict) else got!r}, committed {list(want)}")
        for k in want:
            compare_json(got[k], want[k], kind, tol, f"{what}.{k}")
    else:
        raise Mismatch(f"{what}: unexpected {type(want).__name__}")


def bf16(b):
    return [struct.unpack("<f", b"\0\0" + b[i:i + 2])[0] for i in range(0, len(b), 2)]


DECODE = {"F32": lambda b: list(struct.unpack(f"<{len(b) // 4}f", b)),
          "F64": lambda b: list(struct.unpack(f"<{len(b) // 8}d", b)),
          "F16": lambda b: list(struct.unpack(f"<{len(b) // 2}e", b)),
          "BF16": bf16}


def read_safetensors(data, what):
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + n])
    return header, data[8 + n:]


def compare_safetensors(got, want, kind, tol, what):
    hg, bg = read_safetensors(got, what)
    hw, bw = read_safetensors(want, what)
    if hg != hw:
        raise Mismatch(f"{what}: the header differs")
    for name, info in hw.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        if info["dtype"] not in DECODE:
            if bg[b:e] != bw[b:e]:
                raise Mismatch(f"{what}: tensor {name} ({info['dtype']}) differs")
            continue
        compare_numbers(DECODE[info["dtype"]](bg[b:e]), DECODE[info["dtype"]](bw[b:e]), kind, tol, f"{what}:{name}")


def number(tok):
    try:
        return float(tok)
    except ValueError:
        return None


def compare_text(got, want, kind, tol, what):
    lg, lw = got.decode("utf-8").split("\n"), want.decode("utf-8").split("\n")
    if len(lg) != len(lw):
        raise Mismatch(f"{what}: {len(lg)} lines, committed {len(lw)}")
    for i, (a, b) in enumerate(zip(lg, lw)):
        ta, tb = a.split(), b.split()
        if len(ta) != len(tb):
            raise Mismatch(f"{what}:{i + 1}: '{a[:60]}', committed '{b[:60]}'")
        na, nb = [number(t) for t in ta], [number(t) for t in tb]
        for x, y, s, t in zip(na, nb, ta, tb):
            if (x is None or y is None) and s != t:
                raise Mismatch(f"{what}:{i + 1}: '{s}', committed '{t}'")
        nums = [(x, y) for x, y in zip(na, nb) if x is not None and y is not None]
        if nums:
            compare_numbers([x for x, _ in nums], [y for _, y in nums], kind, tol, f"{what}:{i + 1}")


def compare_file(rel, copy_dir, rule):
    kind, tol = rule
    got_path = os.path.join(copy_dir, rel)
    if not os.path.isfile(got_path):
        raise Mismatch(f"{rel}: not written")
    with open(got_path, "rb") as f:
        got = f.read()
    with open(os.path.join(HERE, rel), "rb") as f:
        want = f.read()
    if got == want:
        return "identical"
    if kind == "json-except":  # the same JSON document but for the top-level keys TOL names
        g, w = json.loads(got), json.loads(want)
        for k in tol:
            g.pop(k, None), w.pop(k, None)
        compare_json(g, w, "abs", 0.0, rel)
        return f"identical but for {', '.join(tol)}"
    if kind == "exact":
        at = next(i for i in range(min(len(got), len(want)) + 1) if i == min(len(got), len(want)) or got[i] != want[i])
        raise Mismatch(f"{rel}: differs from the committed file at byte {at} ({len(got)} vs {len(want)} bytes)")
    if rel.endswith(".json"):
        compare_json(json.loads(got), json.loads(want), kind, tol, rel)
    elif rel.endswith(".safetensors"):
        compare_safetensors(got, want, kind, tol, rel)
    elif rel.endswith(".f32"):
        if len(got) != len(want):
            raise Mismatch(f"{rel}: {len(got)} bytes, committed {len(want)}")
        compare_numbers(DECODE["F32"](got), DECODE["F32"](want), kind, tol, rel)
    else:
        compare_text(got, want, kind, tol, rel)
    return f"within {kind}:{tol:g}"


# ---- main ----

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "..", "shared", "data"))
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--node", default=None)
    a = ap.parse_args()
    require_all = os.environ.get("PISSA_REQUIRE_ALL", "0") not in ("", "0")
    entries, helpers, inputs = read_manifest(os.path.join(HERE, "fixtures.txt"))

    failures, skipped = [], []
    named = {e["script"] for e in entries} | helpers
    listed = {"fixtures.txt"}
    for pattern, where in inputs:
        matches = committed(pattern)
        if not matches:
            failures.append(f"{where}: input '{pattern}' matches no committed file")
        listed |= set(matches)
    for e in entries:
        try:
            listed |= set(expand_outputs(e))
        except Mismatch:
            pass  # reported below
    for root, dirs, names in os.walk(HERE):
        dirs[:] = [d for d in dirs if d not in IGNORED]
        for n in names:
            rel = os.path.relpath(os.path.join(root, n), HERE)
            if rel.endswith(SCRIPT_EXT):
                if rel != os.path.basename(__file__) and rel not in named:
                    failures.append(f"{rel}: a script that fixtures.txt does not name (add its line, or "
                                    f"'helper | {rel}')")
            elif rel not in listed:
                failures.append(f"{rel}: a committed file that no script in fixtures.txt writes (add the script's "
                                f"line, or 'input | {rel}' if it is written by hand)")

    # The copy keeps the repository's layout relative to ../shared/data (WORK/tree/repo/tests/reference and
    # WORK/tree/shared/data), so the scripts' default paths work there; node_modules folders are linked, not copied.
    shutil.rmtree(a.work, ignore_errors=True)
    copy = os.path.join(a.work, "tree", "repo", "tests", "reference")
    os.makedirs(os.path.join(a.work, "tree", "shared"))
    os.symlink(os.path.abspath(a.data), os.path.join(a.work, "tree", "shared", "data"))
    shutil.copytree(HERE, copy, ignore=shutil.ignore_patterns(*IGNORED))
    for root, dirs, _ in os.walk(HERE):
        if "node_modules" in dirs:
            rel = os.path.relpath(os.path.join(root, "node_modules"), HERE)
            os.symlink(os.path.join(HERE, rel), os.path.join(copy, rel))
        dirs[:] = [d for d in dirs if d not in IGNORED]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    produced = set()
    for e in entries:
        try:
            files = expand_outputs(e)
        except Mismatch as m:
            failures.append(str(m))
            continue
        if e["tool"].startswith("test:"):  # rerun by that test, which also makes the script's input
            print(f"  {e['script']}: rerun by ctest {e['tool'][5:]}")
            continue
        missing = tool_missing(e["tool"], e["script"], a.python, a.node)
        args = [x.replace("{data}", os.path.abspath(a.data)) for x in e["args"]]
        if not missing:
            absent = [x[6:] if x.startswith("needs:") else x for x, raw in zip(args, e["args"])
                      if "{data}" in raw and not os.path.exists(x[6:] if x.startswith("needs:") else x)]
            missing = f"{absent[0]} (../shared/data)" if absent else None
        args = [x for x in args if not x.startswith("needs:")]  # declared inputs the script finds by itself
        if missing:
            msg = f"{e['script']}: {missing} is missing"
            if require_all:
                failures.append(msg + ", and PISSA_REQUIRE_ALL=1 forbids skipping")
            else:
                skipped.append(msg)
                print(f"SKIPPED: {msg}")
            continue
        for rel in files:  # the script must write each output afresh
            os.remove(os.path.join(copy, rel))
        exe = [a.node or shutil.which("node")] if e["tool"] == "node" else [a.python]
        script = os.path.join(copy, e["script"])
        run = subprocess.run(exe + [script] + args, cwd=os.path.dirname(script), env=env, capture_output=True,
                             text=True)
        if run.returncode != 0:
            failures.append(f"{e['script']} exited with {run.returncode}:\n{run.stdout[-2000:]}{run.stderr[-4000:]}")
            continue
        for rel, rule in files.items():
            produced.add(rel)
            try:
                how = compare_file(rel, copy, rule)
                print(f"  {e['script']}: {rel} {how}")
            except Mismatch as m:
                failures.append(f"{e['script']}: {m}")
    if not skipped:  # with every script run, nothing in the copy may be new (an output fixtures.txt forgot)
        for root, dirs, names in os.walk(copy):
            dirs[:] = [d for d in dirs if d not in IGNORED]
            for n in names:
                rel = os.path.relpath(os.path.join(root, n), copy)
                if not os.path.exists(os.path.join(HERE, rel)):
                    failures.append(f"{rel}: written by a script but not committed (or not listed in fixtures.txt)")
    ran = len([e for e in entries if not e["tool"].startswith("test:")]) - len(skipped)
    print(f"{ran} of {len(entries)} reference scripts rerun, {len(produced)} fixtures compared, "
          f"{len(skipped)} skipped, {len(failures)} failures")
    for f in failures:
        print("FAIL: " + f)
    sys.exit(1 if failures else 77 if not ran else 0)  # 77: ctest's SKIP_RETURN_CODE when nothing could run


if __name__ == "__main__":
    main()
