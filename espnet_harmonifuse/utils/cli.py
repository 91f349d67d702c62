"""The shared ending of the data-preparation command lines."""

import logging
from typing import Callable, Tuple, Type

LOG_FORMAT = "%(asctime)s (%(module)s) %(levelname)s: %(message)s"


def run_cli(job: Callable[[], object], errors: Tuple[Type[BaseException], ...]) -> int:
    """Run ``job`` with ESPnet-style logging; an expected error is one logged line and exit status 1."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        job()
    except errors as e:
        logging.error("%s", e)
        return 1
    return 0
