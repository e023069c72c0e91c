"""Development-only key material in ``.data/dev`` (git-ignored), created on first use.

Production never reads these files: there the master key comes from FUNDHUB_MASTER_KEY and the
bank's public key is registered with ``fundhub bank-app add``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from fundhub.common.sealing import generate_master_key
from fundhub.common.signing import generate_rsa_keypair

MASTER_KEY_FILE = "master.key"
BANK_SIM_PRIVATE_KEY_FILE = "bank-sim-private.pem"
BANK_SIM_PUBLIC_KEY_FILE = "bank-sim-public.pem"


@dataclass(frozen=True)
class DevKeys:
    master_key: str = field(repr=False)
    bank_sim_private_key_file: Path
    bank_sim_public_key_file: Path

    def bank_sim_public_key_pem(self) -> str:
        return self.bank_sim_public_key_file.read_text(encoding="ascii")


def _secret_dir(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    return directory


def _write_new(path: Path, text: str, mode: int) -> bool:
    """Create ``path`` with ``mode`` unless it exists (never overwrites; race-safe)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(text)
    return True


def ensure_master_key_file(directory: Path) -> str:
    path = _secret_dir(directory) / MASTER_KEY_FILE
    _write_new(path, generate_master_key() + "\n", 0o600)
    return path.read_text(encoding="ascii").strip()


def ensure_dev_keys(directory: Path) -> DevKeys:
    """The master key and the bank simulator's RSA key pair, created when absent."""
    master_key = ensure_master_key_file(directory)
    private_file = directory / BANK_SIM_PRIVATE_KEY_FILE
    public_file = directory / BANK_SIM_PUBLIC_KEY_FILE
    if not private_file.is_file() or not public_file.is_file():
        private_pem, public_pem = generate_rsa_keypair()
        private_file.unlink(missing_ok=True)
        public_file.unlink(missing_ok=True)
        _write_new(private_file, private_pem, 0o600)
        _write_new(public_file, public_pem, 0o644)
    return DevKeys(master_key, private_file, public_file)
