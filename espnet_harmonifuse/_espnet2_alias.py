"""Make ``python -m espnet2.bin.harmonifuse_{train,inference}`` run this plugin's entry points.

``espnet2.bin`` is a plain package of espnet's wheel, so a plugin cannot add
modules to it. The ``espnet_harmonifuse-espnet2-alias.pth`` file that setup.py
installs into site-packages imports this module at interpreter start-up; it
appends a meta-path finder that maps ``espnet2.bin.harmonifuse_*`` to the files
of ``espnet_harmonifuse.bin``. Nothing else is imported, so start-up stays fast.
"""

import importlib.util
import os
import sys

ALIASES = ("harmonifuse_train", "harmonifuse_inference")
_BIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin")


class Espnet2BinAliasFinder:
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        prefix, _, name = fullname.rpartition(".")
        if prefix != "espnet2.bin" or name not in ALIASES:
            return None
        return importlib.util.spec_from_file_location(fullname, os.path.join(_BIN_DIR, name + ".py"))


def install() -> None:
    if not any(f is Espnet2BinAliasFinder for f in sys.meta_path):
        sys.meta_path.append(Espnet2BinAliasFinder)


install()
