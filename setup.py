"""espnet-harmonifuse: HarmoniFuse (multi-task ASR + SER speech LM) as an ESPnet plugin."""

import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ALIAS_PTH = "espnet_harmonifuse-espnet2-alias.pth"
HERE = Path(__file__).parent


class BuildPyWithAlias(build_py):
    """Put the .pth (which maps espnet2.bin.harmonifuse_* to this plugin) into the wheel's root."""

    def run(self):
        super().run()
        self.copy_file(str(HERE / ALIAS_PTH), str(Path(self.build_lib) / ALIAS_PTH))


cmdclass = {"build_py": BuildPyWithAlias}

try:  # editable installs (PEP 660) build their own wheel; add the .pth there too
    from setuptools.command.editable_wheel import editable_wheel

    class EditableWheelWithAlias(editable_wheel):
        def _run_build_commands(self, dist_name, unpacked_wheel, build_lib, tmp_dir):
            result = super()._run_build_commands(dist_name, unpacked_wheel, build_lib, tmp_dir)
            shutil.copy(HERE / ALIAS_PTH, Path(unpacked_wheel) / ALIAS_PTH)
            return result

    cmdclass["editable_wheel"] = EditableWheelWithAlias
except ImportError:  # setuptools < 64 has no PEP 660 editable wheels
    pass

setup(
    name="espnet-harmonifuse",
    version="0.1.0",
    description="HarmoniFuse: a multi-task speech LM for ASR and SER, as an ESPnet plugin",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["espnet_harmonifuse", "espnet_harmonifuse.*"]),
    install_requires=[
        "espnet==202511",
        "torch>=2.1",
        "torchaudio==2.11.0",
        "transformers>=4.45",
        "peft>=0.13",
        "sentencepiece>=0.2",
        "kaldiio>=2.18",
        "humanfriendly",
        "soundfile",
        "matplotlib",
        "tqdm",
        "tensorboard",
        "scipy",
        "espeakng-loader",
    ],
    extras_require={"test": ["pytest>=7"], "bench": ["pocketsphinx>=5", "torcheval"]},
    cmdclass=cmdclass,
)
