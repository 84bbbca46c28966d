#!/usr/bin/python3
"""Golden permutations for test_data: pissa_shuffle_indices(perm, n, seed) as include/pissa/data.h documents it,
written here from the published algorithms rather than from libpissa's C code (a resumed training run visits rows
in this order, so it must never change silently):

  splitmix64    Steele, Lea & Flood; Vigna's reference splitmix64.c: x += 0x9e3779b97f4a7c15, then two
                xor-shift-multiply rounds and a final xor-shift
  xoshiro256**  Blackman & Vigna's reference xoshiro256starstar.c: result = rotl(s[1] * 5, 7) * 9, then the state
                update; the four state words are the first four outputs of splitmix64 started at SEED (the seeding
                the authors recommend)
  Fisher-Yates  for i = n-1 down to 1: j uniform in [0, i] by rejection (draw r until r >= 2^64 mod (i + 1), then
                j = r mod (i + 1)), swap perm[i] and perm[j]

Run with python3 (standard library only): python3 tests/reference/make_shuffle_reference.py
Writes tests/reference/shuffle_golden.json: [{"n", "seed" (a decimal string: JSON numbers are doubles), "perm"}].
"""
import json
import os

M64 = (1 << 64) - 1
HERE = os.path.dirname(os.path.abspath(__file__))


class SplitMix64:
    def __init__(self, seed):
        self.x = seed & M64

    def next(self):
        self.x = (self.x + 0x9E3779B97F4A7C15) & M64
        z = self.x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & M64


class Xoshiro256StarStar:
    def __init__(self, seed):
        sm = SplitMix64(seed)
        self.s = [sm.next() for _ in range(4)]

    def next(self):
        s = self.s
        result = (rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result


def shuffle(n, seed):
    perm = list(range(n))
    rng = Xoshiro256StarStar(seed)
    for i in range(n - 1, 0, -1):
        bound = i + 1
        reject_below = (1 << 64) % bound
        r = rng.next()
        while r < reject_below:
            r = rng.next()
        j = r % bound
        perm[i], perm[j] = perm[j], perm[i]
    return perm


CASES = [(0, 1), (1, 7), (2, 0), (3, 5), (10, 0), (10, 1), (17, 42), (64, 11 + 3), (100, 12345), (257, M64),
         (1000, 0x0123456789ABCDEF)]


def main():
    out = [{"n": n, "seed": str(seed), "perm": shuffle(n, seed)} for n, seed in CASES]
    with open(os.path.join(HERE, "shuffle_golden.json"), "w") as f:
        json.dump(out, f)
        f.write("\n")


if __name__ == "__main__":
    main()
