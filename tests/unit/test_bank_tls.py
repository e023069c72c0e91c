"""payment-worker's session to the bank over real TLS: the bank's CA, and mutual TLS with the
client certificate of ``FUNDHUB_BANK_TLS_*``, against the simulator served with TLS."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.certs import CertAuthority, Issued
from support.orders import payout_order
from support.uvicorn_thread import ThreadedServer

from fundhub.bank_client.session import bank_session
from fundhub.bank_simulator.app import create_app
from fundhub.bank_simulator.config import SimulatorConfig
from fundhub.bank_simulator.payouts_bank import PayoutBehaviour
from fundhub.common.config import Settings
from fundhub.common.signing import generate_rsa_keypair
from fundhub.payouts.bank import BankStatus, BankUnavailable
from fundhub.payouts.bank_http import HttpBankAdapter


class TlsBank(ThreadedServer):
    """The simulator under uvicorn with TLS that requires a client certificate from ``ca``."""

    def __init__(self, ca: CertAuthority, server: Issued) -> None:
        private_pem, _ = generate_rsa_keypair()
        config = SimulatorConfig(
            gateway_url="http://127.0.0.1:9", private_key_pem=private_pem, retries=0
        )
        app = create_app(config, PayoutBehaviour(seed=1, never_answer_rate=1.0))
        super().__init__(
            app,
            scheme="https",
            ssl_certfile=str(server.cert),
            ssl_keyfile=str(server.key),
            ssl_ca_certs=str(ca.cert_path),
            ssl_cert_reqs=ssl.CERT_REQUIRED,
        )


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
