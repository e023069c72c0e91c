"""payment-worker's session to the bank over real TLS: the bank's CA, and mutual TLS with the
client certificate of ``FUNDHUB_BANK_TLS_*``, against the simulator served with TLS."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from support.certs import CertAuthority, Issued
from support.orders import payout_order

from fundhub.bank_simulator.app import create_app
from fundhub.bank_simulator.config import SimulatorConfig
from fundhub.bank_simulator.payouts_bank import PayoutBehaviour
from fundhub.common.config import Settings
from fundhub.common.signing import generate_rsa_keypair
from fundhub.payouts.bank import BankStatus, BankUnavailable
from fundhub.payouts.bank_http import HttpBankAdapter, bank_session


class TlsBank:
    """The simulator under uvicorn with TLS that requires a client certificate from ``ca``."""

    def __init__(self, ca: CertAuthority, server: Issued) -> None:
        private_pem, _ = generate_rsa_keypair()
        config = SimulatorConfig(
            gateway_url="http://127.0.0.1:9", private_key_pem=private_pem, retries=0
        )
        app = create_app(config, PayoutBehaviour(seed=1, never_answer_rate=1.0))
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_config=None,
                log_level="warning",
                timeout_graceful_shutdown=1,
                ssl_certfile=str(server.cert),
                ssl_keyfile=str(server.key),
                ssl_ca_certs=str(ca.cert_path),
                ssl_cert_reqs=ssl.CERT_REQUIRED,
            )
        )
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the simulator did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> CertAuthority:
    return CertAuthority(Path(tmp_path_factory.mktemp("bank-pki")), "bank CA")


@pytest.fixture(scope="module")
def bank(pki: CertAuthority) -> Iterator[TlsBank]:
    server = TlsBank(pki, pki.issue("bank", server=True))
    yield server
    server.stop()


def _settings(bank: TlsBank, **tls: str) -> Settings:
    return Settings(bank_base_url=bank.url, **tls)  # type: ignore[arg-type]


async def test_mutual_tls_to_the_bank(bank: TlsBank, pki: CertAuthority) -> None:
    client = pki.issue("payment-worker", server=False)
    settings = _settings(
        bank,
        bank_tls_ca=str(pki.cert_path),
        bank_tls_certfile=str(client.cert),
        bank_tls_keyfile=str(client.key),
    )
    async with bank_session(settings) as session:
        adapter = HttpBankAdapter(session, settings.bank_base_url, 5.0, retries=0)
        answer = await adapter.submit(payout_order("PAYTLS000000000001"))
        assert answer.status is BankStatus.PROCESSING


@pytest.mark.parametrize("case", ["no client certificate", "bank's CA not trusted"])
async def test_without_the_right_tls_the_bank_is_unavailable(
    bank: TlsBank, pki: CertAuthority, case: str
) -> None:
    client = pki.issue("payment-worker-2", server=False)
    tls = (
        {"bank_tls_ca": str(pki.cert_path)}
        if case == "no client certificate"
        else {"bank_tls_certfile": str(client.cert), "bank_tls_keyfile": str(client.key)}
    )
    settings = _settings(bank, **tls)
    async with bank_session(settings) as session:
        adapter = HttpBankAdapter(session, settings.bank_base_url, 5.0, retries=0)
        with pytest.raises(BankUnavailable):
            await adapter.submit(payout_order("PAYTLS000000000002"))
