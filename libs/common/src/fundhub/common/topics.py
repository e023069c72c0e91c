"""Topic and consumer-group names: versioned, under the deployment's namespace."""

from __future__ import annotations

from dataclasses import dataclass

from fundhub.common.config import Settings, get_settings


@dataclass(frozen=True)
class Topics:
    namespace: str

    def _t(self, name: str) -> str:
        return f"{self.namespace}.{name}"

    @property
    def bank_transfer_notify(self) -> str:
        """Verified ``bkfunds.acct.transfer.notify`` notifications, keyed by ``in_acct_no``."""
        return self._t("bank.transfer-notify.v1")

    @property
    def bank_notify_unhandled(self) -> str:
        """Correctly signed bank notifications whose ``method`` we do not process yet."""
        return self._t("bank.notify-unhandled.v1")

    @property
    def ledger_events(self) -> str:
        """Events relayed from the outbox after the ledger committed them."""
        return self._t("ledger.events.v1")

    @property
    def dead_letter(self) -> str:
        """Messages that can never be processed, with the reason in their headers."""
        return self._t("dead-letter.v1")

    @property
    def payout_commands(self) -> str:
        """Accepted payout requests (``payout.requested``), keyed by the payer account."""
        return self._t("payouts.commands.v1")

    @property
    def bank_payout_results(self) -> str:
        """Verified ``bkfunds.payout.result.notify`` callbacks, keyed by the payId."""
        return self._t("bank.payout-results.v1")

    @property
    def payout_events(self) -> str:
        """Payout state changes from the outbox (``payout.state-changed``), keyed by payId."""
        return self._t("payouts.events.v1")

    @property
    def client_callbacks(self) -> str:
        """Final states to deliver to clients' callbackUrl (``payout.callback``), keyed by payId."""
        return self._t("callbacks.v1")

    @property
    def audit(self) -> str:
        """Audit entries (``audit.entry``) from the gateway, made durable before it answers."""
        return self._t("audit.v1")

    @property
    def channel_notifications(self) -> str:
        """Verified WeChat Pay and Alipay notifications, keyed by out_trade_no."""
        return self._t("channels.notify.v1")

    @property
    def merchant_commands(self) -> str:
        """Merchant changes for the depository, keyed by merchantId."""
        return self._t("merchants.commands.v1")

    @property
    def bank_split_results(self) -> str:
        """Verified ``bkfunds.split.result.notify`` results, keyed by settlementId."""
        return self._t("bank.split-results.v1")

    @property
    def bank_merchant_results(self) -> str:
        """Verified ``bkfunds.member.result.notify`` results, keyed by merchantId."""
        return self._t("bank.merchant-results.v1")

    @property
    def order_commands(self) -> str:
        """Refunds and settlements for the channels and the depository, keyed by orderNo."""
        return self._t("orders.commands.v1")

    def all(self) -> list[str]:
        return [
            self.bank_transfer_notify,
            self.bank_notify_unhandled,
            self.ledger_events,
            self.dead_letter,
            self.payout_commands,
            self.bank_payout_results,
            self.payout_events,
            self.client_callbacks,
            self.audit,
            self.channel_notifications,
            self.merchant_commands,
            self.bank_merchant_results,
            self.order_commands,
            self.bank_split_results,
        ]

    def group(self, service: str) -> str:
        return f"{self.namespace}.{service}"


def topics(settings: Settings | None = None) -> Topics:
    return Topics((settings or get_settings()).topic_namespace)


def min_insync_replicas(replication_factor: int) -> int:
    """Replicas an acks=all write must reach: 2 of 3, so one broker may be lost (or restarted)
    with no acknowledged write lost and writes still accepted; 1 when there is no spare."""
    return 2 if replication_factor >= 3 else 1
