#!/usr/bin/env python3
"""Turn the output of bench/results.sh into the markdown tables of bench/RESULTS.md.

    bench/results.sh build > out.txt && bench/results_table.py out.txt
"""
import os
import re
import sys


def rows(section):
    out = []
    for line in section.splitlines()[1:]:
        f = re.sub(r'^\[0\]\s*', '', line).split()
        if len(f) >= 13 and f[0].isdigit():
            # size, out-of-place time, busbw, in-place time, busbw
            out.append((int(f[0]), float(f[5]), float(f[7]), float(f[9]), float(f[11])))
    return out


def size(b):
    for unit, k in (('GiB', 1 << 30), ('MiB', 1 << 20), ('KiB', 1 << 10)):
        if b >= k and b % k == 0:
            return f'{b // k} {unit}'
    return f'{b} B'


def main(path):
    text = open(path).read()
    data = {s.splitlines()[0].strip(): rows(s) for s in re.split(r'^## ', text, flags=re.M) if s.strip()}
    memcpy = {r[0]: r[2] for r in data['memcpy, 1 rank']}
    memcpy2 = {r[0]: r[2] for r in data['memcpy, 2 ranks at once']}
    for title in ('allreduce shm, 2 ranks', 'allreduce shm, 4 ranks',
                  'allreduce tcp (loopback), 2 ranks', 'allreduce tcp (loopback), 4 ranks'):
        print(f'#### {title}\n')
        print('| size | time (us) | busbw (GB/s) | in-place time (us) | in-place busbw | memcpy, same size (GB/s) | busbw / memcpy |')
        print('|---:|---:|---:|---:|---:|---:|---:|')
        for b, t1, bw1, t2, bw2 in data[title]:
            m = memcpy[b]
            print(f'| {size(b)} | {t1:.2f} | {bw1:.2f} | {t2:.2f} | {bw2:.2f} | {m:.2f} | {100 * bw1 / m:.0f}% |')
        print()
    print('#### memcpy (the limit)\n')
    print('| size | 1 rank (GB/s) | 2 ranks at once, each (GB/s) |')
    print('|---:|---:|---:|')
    for b in sorted(memcpy):
        print(f'| {size(b)} | {memcpy[b]:.2f} | {memcpy2.get(b, 0):.2f} |')


if __name__ == '__main__':
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tools'))
    import loomcli
    ap = loomcli.parser('results_table.py', 'bench/results.sh output -> the markdown tables of bench/RESULTS.md')
    ap.add_argument('output', help='what bench/results.sh printed')
    main(ap.parse_args().output)
