"""loomcli: the argument parser of loom's Python tools (tools/, bench/): argparse with
--version (the version of include/loom.h beside it), so every tool answers --help,
--version and names an unknown option alike."""
import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def version():
    with open(os.path.join(ROOT, 'include', 'loom.h')) as f:
        v = dict(re.findall(r'^#define LOOM_VERSION_(MAJOR|MINOR|PATCH) (\d+)$', f.read(), re.M))
    return '%s.%s.%s' % (v['MAJOR'], v['MINOR'], v['PATCH'])


class Parser(argparse.ArgumentParser):
    """Names an unknown option before it complains of a missing argument."""

    def parse_args(self, args=None, namespace=None):
        argv = sys.argv[1:] if args is None else list(args)
        for a in argv:
            if a == '--':
                break
            if a.startswith('-') and len(a) > 1 and not a[1].isdigit() and \
                    a.split('=')[0] not in self._option_string_actions:
                self.error('unrecognized arguments: %s' % a)
        return super().parse_args(argv, namespace)


def parser(prog, description, **kw):
    ap = Parser(prog=prog, description=description, **kw)
    ap.add_argument('--version', action='version', version='%s (loom) %s' % (prog, version()))
    return ap
