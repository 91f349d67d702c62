"""Models on the Hugging Face Hub: ``org/name`` -> a local snapshot dir, through the hub's own cache.

``snapshot_download`` reads the local hub cache (``$HF_HUB_CACHE``, default ``$HF_HOME/hub``, i.e.
``~/.cache/huggingface/hub``) before the network, so with ``HF_HUB_OFFLINE=1`` a model downloaded
earlier still loads. Every failure ends in one message that says what to do.
"""

import re
from pathlib import Path
from typing import Optional

# owner/name, each part as the Hub allows it (letters, digits, '-', '_', '.'; no '--' or '..')
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_FILE_SUFFIXES = (".zip", ".yaml", ".yml", ".pth")


class HubModelNotFoundError(FileNotFoundError):
    """A name that is neither a local path nor a model the hub (or its local cache) has."""


def looks_like_repo_id(name) -> bool:
    """``org/name`` as the Hub spells repository ids (a path to a file or a dir tree does not match)."""
    name = str(name)
    return bool(_REPO_ID.match(name)) and "--" not in name and ".." not in name and not name.endswith(_FILE_SUFFIXES)


def _fix(repo_id: str) -> str:
    return (f"Download it where there is network (hf download {repo_id}, or "
            f"HarmoniFuse.from_pretrained('{repo_id}') once online) and load it again with HF_HUB_OFFLINE=1, "
            "or give the path of an exp dir, a packed .zip or a downloaded model dir")


def snapshot_dir(repo_id: str, revision: Optional[str] = None) -> Path:
    """The local dir of ``repo_id`` at ``revision`` (default: main), downloaded unless cached."""
    from huggingface_hub import constants, errors, snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    incomplete = getattr(errors, "IncompleteSnapshotError", ())  # newer hubs tell a partial download apart

    where = f"'{repo_id}' is not a local path, so it was looked up as a Hugging Face Hub model"
    try:
        snapshot = Path(snapshot_download(repo_id, revision=revision))
    except RevisionNotFoundError:
        raise HubModelNotFoundError(f"{where}: it has no revision '{revision}'; give a branch, tag or commit "
                                    "of the model (or none for main)") from None
    except RepositoryNotFoundError:  # also a gated model without access
        raise HubModelNotFoundError(f"{where}, and the Hub has no such model that you can read: check the name, "
                                    "and for a private or gated model log in (hf auth login, or set HF_TOKEN); "
                                    "or give the path of an exp dir or a packed .zip") from None
    except incomplete as e:
        raise HubModelNotFoundError(f"{where}: {e}") from None
    except LocalEntryNotFoundError:
        reason = ("HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the Hub cannot be reached")
        at = f" at revision '{revision}'" if revision else ""
        raise HubModelNotFoundError(f"{where}, but it is not{at} in the local hub cache ({constants.HF_HUB_CACHE}) and "
                                    f"{reason}. {_fix(repo_id)}") from None
    except HfHubHTTPError as e:
        answer = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise HubModelNotFoundError(f"{where}, and the Hub answered: {answer}. {_fix(repo_id)}") from None
    if not (snapshot / "config.yaml").is_file():
        raise HubModelNotFoundError(f"Hub model '{repo_id}' ({snapshot}) has no config.yaml: it is not a HarmoniFuse "
                                    "model (python -m espnet_harmonifuse.bin.upload writes one)")
    return snapshot
