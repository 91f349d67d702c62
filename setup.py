"""Build hooks of espnet-harmonifuse (metadata: pyproject.toml).

``python -m espnet2.bin.harmonifuse_*`` must resolve to this plugin, but ``espnet2.bin`` belongs to
espnet's wheel. A ``.pth`` file in site-packages installs an import alias at start-up
(espnet_harmonifuse/_espnet2_alias.py); these commands put it into regular and editable wheels.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

ALIAS_PTH = "espnet_harmonifuse-espnet2-alias.pth"
HERE = Path(__file__).parent


class BuildPyWithAlias(build_py):
    """Put the .pth into the wheel's root."""

    def run(self):
        super().run()
        self.copy_file(str(HERE / ALIAS_PTH), str(Path(self.build_lib) / ALIAS_PTH))


class EditableWheelWithAlias(editable_wheel):
    """Editable installs (PEP 660) build a wheel of their own: add the .pth there too."""

    def _run_build_commands(self, dist_name, unpacked_wheel, build_lib, tmp_dir):
        result = super()._run_build_commands(dist_name, unpacked_wheel, build_lib, tmp_dir)
        shutil.copy(HERE / ALIAS_PTH, Path(unpacked_wheel) / ALIAS_PTH)
        return result


setup(cmdclass={"build_py": BuildPyWithAlias, "editable_wheel": EditableWheelWithAlias})
