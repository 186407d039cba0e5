"""Loaded by the worker's embedded Python when scripts/e2e-real-worker runs with
--shim-branch-names: segment parameters that native code (silver-platter, which then opens the
branch by that name) asks breezy to split come back unescaped, as breezy's own Branch.open reads
them, so `,name=fixes%2Fmain` opens branch `fixes/main`. Calls from Python code (breezy itself,
which unescapes where it needs to) are left alone.
"""

import sys

try:
    from breezy import urlutils
except ImportError:  # not the worker's interpreter
    urlutils = None

if urlutils is not None:
    _split_segment_parameters = urlutils.split_segment_parameters

    def split_segment_parameters(url):
        base, parameters = _split_segment_parameters(url)
        try:
            sys._getframe(1)
        except ValueError:
            # No Python caller: the call came straight from the worker's Rust code.
            return base, {key: urlutils.unescape(value) for key, value in parameters.items()}
        return base, parameters

    urlutils.split_segment_parameters = split_segment_parameters
