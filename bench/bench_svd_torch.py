"""PyTorch side of the SVD benchmark (see bench/run_svd.sh): times torch.svd_lowrank(W, q=r, niter=N) (PEFT's
pissa_niter_N path) and torch.linalg.svd on the matrices bench_svd wrote, then prints one table next to the C
results (OUT_DIR/c_results.tsv) with the ratio torch time / our time.

    /usr/bin/python3 bench/bench_svd_torch.py --dir OUT_DIR --threads 2 [--reps 3]
"""
import argparse
import os
import statistics
import time

import numpy as np
import torch


def rel_error(w, u, s, vt):
    # residual in float32 like the C side, its norm accumulated in float64 (a float32 sum over 45M squares is
    # off in the 4th digit)
    r = (w - (u * s) @ vt).double()
    return (torch.linalg.norm(r) / torch.linalg.norm(w.double())).item()


def median_time(fn, reps):
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    c = {}  # (shape, method, r, N) -> (ms, err)
    order = []
    with open(os.path.join(args.dir, "c_results.tsv")) as f:
        for line in f:
            shape, method, r, n, ms, err = line.split("\t")
            c[(shape, method, int(r), int(n))] = (float(ms), float(err))
            if shape not in order:
                order.append(shape)

    rows = []
    for shape in order:
        m, n = map(int, shape.split("x"))
        w = torch.from_numpy(np.fromfile(os.path.join(args.dir, "W_%s.bin" % shape), dtype="<f4").reshape(m, n))
        settings = sorted({(r, it) for (sh, meth, r, it) in c if sh == shape and meth == "optimal"})
        for r, it in settings:
            torch.manual_seed(0)
            ms, (u, s, v) = median_time(lambda: torch.svd_lowrank(w, q=r, niter=it), args.reps)
            rows.append((shape, r, it, ms, rel_error(w, u, s, v.t())))
        exact = None
        if any(sh == shape and meth == "ours_exact" for (sh, meth, _, _) in c):
            t0 = time.perf_counter()
            u, s, vt = torch.linalg.svd(w, full_matrices=False)
            ms = 1e3 * (time.perf_counter() - t0)
            exact = (ms, {r: rel_error(w, u[:, :r], s[:r], vt[:r]) for r, _ in settings})
            del u, vt
        rows.append((shape, "exact", exact))

    print()
    print("threads=%d; times are medians (ms) after a warm-up; err = ||W - U S V^T||_F / ||W||_F; "
          "ratio = torch time / our time" % args.threads)
    hdr = "%-11s %4s %3s  %9s | %9s %9s | %9s %9s %6s | %9s %9s %6s" % (
        "shape", "r", "N", "optimal", "torch ms", "err", "ours p=0", "err", "ratio", "ours p=8", "err", "ratio")
    print(hdr)
    print("-" * len(hdr))
    for row in rows:
        shape = row[0]
        if row[1] == "exact":
            if row[2] is None:
                print("%-11s exact SVD skipped (--no-exact)" % shape)
                continue
            t_ms, errs = row[2]
            ours = [(r, c[(shape, "ours_exact", r, 0)]) for r in sorted(errs)]
            our_ms = ours[0][1][0]
            print("%-11s full SVD: torch.linalg.svd %.0f ms, ours (sgesdd) %.0f ms, ratio %.2f; err at %s" % (
                shape, t_ms, our_ms, t_ms / our_ms,
                ", ".join("r=%d torch %.6f ours %.6f" % (r, errs[r], e[1]) for r, e in ours)))
            continue
        _, r, it, t_ms, t_err = row
        opt = c[(shape, "optimal", r, it)][1]
        p0 = c[(shape, "ours_rsvd_p0", r, it)]
        p8 = [v for (sh, meth, rr, ii), v in c.items()
              if sh == shape and rr == r and ii == it and meth.startswith("ours_rsvd_p") and meth != "ours_rsvd_p0"][0]
        print("%-11s %4d %3d  %9.6f | %9.1f %9.6f | %9.1f %9.6f %6.2f | %9.1f %9.6f %6.2f" % (
            shape, r, it, opt, t_ms, t_err, p0[0], p0[1], t_ms / p0[0], p8[0], p8[1], t_ms / p8[0]))


if __name__ == "__main__":
    main()
