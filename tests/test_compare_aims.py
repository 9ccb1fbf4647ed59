#!/usr/bin/env python3
"""test_compare_aims.py: bench/compare's aims line on made-up repetitions, where the
right answer is known: a busbw miss from 64 KiB, a latency miss below it, cells that
pass, a size with nothing to compare, and the shaped links' 90 % of the link.

    test_compare_aims.py SRC_ROOT
"""
import contextlib
import importlib.machinery
import importlib.util
import io
import os
import sys

src = sys.argv[1]
loader = importlib.machinery.SourceFileLoader('compare', os.path.join(src, 'bench', 'compare'))
spec = importlib.util.spec_from_loader('compare', loader)
compare = importlib.util.module_from_spec(spec)
loader.exec_module(compare)


class Scenario:
    def __init__(self, name):
        self.name = name


def row(lib, size, t, bw, group=2, op='allreduce', stolen=None, rtt=None):
    r = {'library': lib, 'group': str(group), 'size': str(size), 'op': op, 'time_us': str(t),
         'busbw': str(bw), 'time_us_inplace': str(t), 'busbw_inplace': str(bw)}
    if stolen is not None:                    # absent in CSVs written before the columns
        r['stolen'] = str(stolen)
    if rtt is not None:
        r['rtt_before'], r['rtt_after'] = str(rtt[0]), str(rtt[1])
    return r


def aims(name, data, group):
    m = {lib: compare.medians(data, group, lib) for lib in compare.LIBS}
    lim = compare.limits(Scenario(name), data, group, m['loom'])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        compare.aims(Scenario(name), data, group, m, lim)
    return out.getvalue()


failed = 0


def expect(what, got, want):
    global failed
    if want not in got:
        print(f'FAIL {what}: wanted {want!r} in:\n{got}')
        failed = 1
    else:
        print(f'ok   {what}')


local = []
for t in (1.0, 1.1, 9.0):                     # 8 B: loom 1.1 us (one slow run) against 1.0: passes
    local.append(row('loom', 8, t, 0.01))
for t in (0.9, 1.0, 1.2):
    local.append(row('openmpi', 8, t, 0.01))
    local.append(row('gloo', 8, t * 50, 0.0))
for t in (1.3, 1.4, 1.3):                     # 32 B: 1.3x the best peer: a latency miss
    local.append(row('loom', 32, t, 0.02))
    local.append(row('openmpi', 32, 1.0, 0.03))
    local.append(row('gloo', 32, 40.0, 0.0))
for t in (1.2, 1.2, 1.2):                     # 128 B: Gloo fastest, its busbw rounded to 0
    local.append(row('loom', 128, t, 0.1))
    local.append(row('openmpi', 128, 2.0, 0.06))
    local.append(row('gloo', 128, 0.9, 0.0))
for bw in (5.0, 6.0, 4.0):                    # 1 MiB: loom's busbw below Gloo's: a miss
    local.append(row('loom', 1 << 20, 100.0, bw))
    local.append(row('openmpi', 1 << 20, 200.0, 3.0))
    local.append(row('gloo', 1 << 20, 80.0, 5.5))
for bw, rtt in ((3.0, (60, 62)), (2.0, (350, 340)), (3.1, (61, 60))):   # 16 MiB: a miss, with the
    local.append(row('loom', 16 << 20, 100.0 * 4 / bw, bw, stolen=0.01, rtt=rtt))   # CPUs' distance
    local.append(row('openmpi', 16 << 20, 100.0, 4.0, stolen=0.0, rtt=(60, 60)))
for bw in (9.0, 9.5, 8.0):                    # 4 MiB: ahead of both: passes
    local.append(row('loom', 4 << 20, 400.0, bw))
    local.append(row('openmpi', 4 << 20, 500.0, 7.0))
    local.append(row('gloo', 4 << 20, 900.0, 2.0))
local.append(row('loom', 0, 0.02, 0.0))       # nothing moved: nothing to compare
local.append(row('openmpi', 0, 0.01, 0.0))
local.append(row('memcpy', 8, 0.01, 1.0, group=1))
got = aims('local', local, 2)
expect('counts the sizes compared', got, 'aims met in 2 of 6 sizes:')
expect('a miss with the host share and the CPUs round trip of each repetition', got,
       '16777216: busbw 0.75x openmpi; us per repetition: loom 133.333 200 129.032 (host took 1% 1% 1%; '
       'CPU round trip ns 60/62 350/340 61/60); openmpi 100 100 100 (host took 0% 0% 0%; CPU round trip ns '
       '60/60 60/60 60/60)')
expect('latency against the fastest peer, whatever its busbw', got, '128: time 1.33x gloo')
expect('latency miss with its repetitions', got, '32: time 1.30x openmpi; us per repetition: loom 1.3 1.4 1.3; openmpi 1 1 1')
expect('busbw miss against the best peer', got, '1048576: busbw 0.91x gloo')
expect('no line for a cell that passes', str(got.count('\n')), '5')   # the count line and 4 misses

net = []
for bw in (0.46, 0.44, 0.47):                 # 16 MiB at 4 Gbit/s (0.5 GB/s): 92 %: passes
    net.append(row('loom', 16 << 20, 1000.0, bw, group=4))
for bw in (0.43, 0.44, 0.45):                 # 64 MiB: 88 %: a miss
    net.append(row('loom', 64 << 20, 4000.0, bw, group=4))
for bw, st in ((0.40, 0.0), (0.30, 0.4), (0.41, 0.01)):   # 32 MiB: 80 %, with the host's share
    net.append(row('loom', 32 << 20, 2000.0 if st < 0.1 else 2700.0, bw, group=4, stolen=st))
net.append(row('loom', 1 << 20, 100.0, 0.2, group=4))   # below 16 MiB: not an aim
got = aims('net', net, 4)
expect('net: only 16 MiB and up count', got, 'aims met in 1 of 3 sizes:')
expect('net: a miss with the host share of each repetition', got,
       '33554432: 80% of the link; us per repetition: loom 2000 2700 2000 (host took 0% 40% 1%)')
expect('net: the miss as a share of the link', got, '67108864: 88% of the link; us per repetition: loom 4000 4000 4000')
# The host's share comes out of the busy time: /proc/stat deltas of 1000 jiffies, 400
# idle or waiting, 300 stolen -> 30 % busy, 30 % stolen.
ticks = iter([(2000, 900, 400)])
compare.cpu_times = lambda: next(ticks)
busy, stolen = compare.load_since((1000, 500, 100))
expect('busy leaves out stolen time', f'{busy:.2f} {stolen:.2f}', '0.30 0.30')
expect('job line', compare.load_text((0.3, 0.3)), 'cores 30% busy, 30% stolen by the host')
sys.exit(failed)
