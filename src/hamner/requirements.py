"""The oldest versions of the libraries hamner's code needs, checked where it matters.

``pyproject.toml`` declares the same lower bounds as ranges (never exact pins), so that a user's
own torch (a CUDA build, say) is kept; ``constraints.txt`` holds the exact versions this project
was measured with. Outside pip (a conda environment, ``--no-deps``, a vendored copy), nothing
checks the ranges: :func:`check_requirements` does, before a model is built, and names the
package, the version found and the one needed.
"""

from __future__ import annotations

import importlib.metadata
from functools import lru_cache

from hamner.errors import HamnerError

#: distribution name -> (oldest version the code works with, why that one)
MINIMUM: dict[str, tuple[str, str]] = {
    "torch": ("2.4", "torch.amp.GradScaler('cuda'), bf16 autocast on CPU and CUDA"),
    "transformers": ("4.40", "AutoModel / AutoTokenizer loading of local directories, fast tokenizers' word ids"),
    "tokenizers": ("0.19", "the fast tokenizers transformers 4.40 is built on"),
    "safetensors": ("0.4", "safetensors.torch save_file / load_file with metadata"),
    "pytorch-crf": ("0.7.2", "torchcrf.CRF with batch_first and reduction='none'"),
    "numpy": ("1.24", "numpy.random.Generator and typing used by metrics and the feature cache"),
}


class RequirementError(HamnerError, ImportError):
    """An installed library is missing or older than hamner needs."""


def _release(version: str) -> tuple[int, ...]:
    from packaging.version import Version

    return Version(version).release


@lru_cache(maxsize=1)
def check_requirements() -> None:
    """Raise :class:`RequirementError` naming every library that is missing or too old."""
    problems = []
    for name, (oldest, why) in MINIMUM.items():
        try:
            found = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{name} is not installed (hamner needs {name}>={oldest}: {why})")
            continue
        if _release(found) < _release(oldest):
            problems.append(f"{name} {found} is installed, hamner needs {name}>={oldest} ({why})")
    if problems:
        raise RequirementError(
            "; ".join(problems) + ". Upgrade with pip install 'PACKAGE>=VERSION' (keep your own torch build: "
            "pip install --upgrade only the packages named)."
        )
