"""Which SB3 agent files this machine trusts: a content hash and a per-machine signature.

An SB3 `.zip` is a pickle (its settings are cloudpickled; unpickling runs code), and its sidecar
JSON is public information (a bundled world's sha256 is known to all). So a pair of files alone
proves nothing. When dreamgym saves an agent it records in the sidecar

- `zip_sha256`: the sha256 of the zip, so a zip swapped under a genuine sidecar is refused;
- `signature`: HMAC-SHA256 of the sidecar's canonical JSON (zip_sha256 included) under a
  secret key of this user on this machine (`agent_key` in dreamgym's config folder:
  `$DREAMGYM_CONFIG_DIR`, else `$XDG_CONFIG_HOME/dreamgym`, else `~/.config/dreamgym`; 32
  random bytes, created 0600 on the first save).

A file that carries a valid signature was written by dreamgym for this user on this machine (or
by someone who can read the user's key, who could run code as the user anyway). Anything else
(another machine's agent, an older dreamgym's, a hand-made sidecar) needs an explicit opt-in:
`trust=True` / `--trust-agent`. Workers get the verified zip's sha256 as their `trust` value, so
a worker without the key (a Ray node) loads exactly the content the driver checked.

This module imports neither torch nor stable-baselines3.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

from dreamgym.utils.files import sha256_file

KEY_FILE = "agent_key"
KEY_BYTES = 32
ZIP_SHA256 = "zip_sha256"
SIGNATURE = "signature"
TRUST_HINT = (
    "SB3 zips are pickles that can run code when loaded; if you trust where this one came from, "
    "pass --trust-agent (trust=True in Python)"
)

Trust = bool | str
"""False (only this machine's signed agents), True (any agent: the caller vouches for it), or
the sha256 of the one zip content the caller has already verified (what workers receive)."""


class UntrustedAgentError(ValueError):
    """An SB3 agent file this machine did not write, or a zip its sidecar does not describe."""


def config_dir() -> Path:
    """dreamgym's per-user config folder (see the module docstring)."""
    if os.environ.get("DREAMGYM_CONFIG_DIR"):
        return Path(os.environ["DREAMGYM_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dreamgym"


def machine_key(create: bool = False) -> bytes | None:
    """This user's agent-signing key; made (0600, in a 0700 folder) when `create` and missing."""
    path = config_dir() / KEY_FILE
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        if not create:
            return None
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return path.read_bytes()
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(KEY_BYTES))
        return path.read_bytes()
    return key if len(key) >= KEY_BYTES else None


def _canonical(meta: dict[str, Any]) -> bytes:
    body = {k: v for k, v in meta.items() if k != SIGNATURE}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign_sidecar(meta: dict[str, Any], zip_bytes: bytes) -> dict[str, Any]:
    """`meta` with the zip's sha256 and this machine's signature over both."""
    signed = {k: v for k, v in meta.items() if k != SIGNATURE}
    signed[ZIP_SHA256] = hashlib.sha256(zip_bytes).hexdigest()
    key = machine_key(create=True)
    assert key is not None
    signed[SIGNATURE] = hmac.new(key, _canonical(signed), hashlib.sha256).hexdigest()
    return signed


def _signature_problem(meta: dict[str, Any]) -> str | None:
    """Why the sidecar's signature does not vouch for it (None: it does)."""
    signature = meta.get(SIGNATURE)
    if not isinstance(signature, str):
        return "its sidecar carries no signature (an agent from an older dreamgym or made by hand)"
    key = machine_key()
    if key is None:
        return "this machine has no dreamgym agent key, so it wrote no agents"
    expected = hmac.new(key, _canonical(meta), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature, expected):
        return "its signature is not this machine's (written elsewhere, or the sidecar was edited)"
    return None


def check_agent_trust(meta: dict[str, Any], zip_path: Path, trust: Trust = False) -> str:
    """The zip's sha256, once the agent may be loaded; else an `UntrustedAgentError` saying why.

    A recorded `zip_sha256` must match the zip whatever `trust` says (the sidecar describes
    another file). `trust` a sha256: the zip must have exactly that content.
    """
    digest = sha256_file(zip_path)
    recorded = meta.get(ZIP_SHA256)
    if recorded is not None and recorded != digest:
        raise UntrustedAgentError(
            f"agent {zip_path} is not the zip its sidecar describes (sha256 {digest[:12]}…, "
            f"sidecar: {str(recorded)[:12]}…): it was replaced or damaged; restore it or re-save "
            "the agent"
        )
    if isinstance(trust, str):
        if trust != digest:
            raise UntrustedAgentError(
                f"agent {zip_path} changed since it was checked (sha256 {digest[:12]}…, checked: "
                f"{trust[:12]}…); run again with the file left in place"
            )
        return digest
    if trust is True:
        return digest
    problem = _signature_problem(meta)
    if problem is not None:
        raise UntrustedAgentError(
            f"agent {zip_path} was not written by dreamgym on this machine: {problem}. "
            + TRUST_HINT
        )
    return digest
