"""What a platform sends about a sub-merchant: parsed strictly, normalised, fingerprinted. Pure.

Four bodies: the registration (``POST /v1/merchants``), a material change (``…/materials``, the
registration's materials without ``merchantNo`` and ``notifyUrl``), a settlement account
(``…/settlement-account``) and a micro-deposit confirmation (``…/settlement-account/verify``).
Every refusal names its field (E001); types are strict (a number is never read from a string).

The material is what the depository reviews:

- ``name`` (1–100), ``type`` ``INDIVIDUAL`` (a natural person) or ``ENTERPRISE`` (a registered
  business, sole traders included, which hold a business licence);
- ``legalPerson``: the person (an individual) or the legal representative (an enterprise):
  ``name`` (1–50), ``idType`` ``RESIDENT_ID`` (居民身份证, check character verified),
  ``PASSPORT`` (5–20 of ``A-Z 0-9``) or ``TRAVEL_PERMIT`` (港澳台居民来往内地通行证), ``idNumber``;
- ``licence``: required for an enterprise, refused for an individual: ``licenceNo``, the
  unified social credit code (check character verified), optional ``validUntil`` (a date; none
  means long-term);
- ``contact``: ``name``, ``phone`` (a mainland mobile number or ``+`` and 7–15 digits), optional
  ``email``.

Identity numbers, names, phone numbers and e-mail addresses are personal data: they are stored
for the depository, but every answer, callback and audit entry shows them masked
(``wire.masked_materials``, ``audit.masking``), and no log line carries them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from typing import Annotated, Literal, Self, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, ValidationError, model_validator

from fundhub.common.json_body import (
    InvalidBody,
    StrictBody,
    first_error,
    has_control,
    parse_object,
)
from fundhub.merchants.identity import PASSPORT, TRAVEL_PERMIT, is_resident_id, is_uscc
from fundhub.webhooks.destinations import CallbackAddresses, check_url_shape

MERCHANT_NO_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,32}$")
# The micro-deposit is at most 0.50 yuan (小额鉴权): a reported amount outside is no answer.
MAX_MICRO_DEPOSIT = 50
# No body of these routes needs more keys or depth than this (a few dozen fields, 3 levels).
_MAX_KEYS = 32
_MAX_DEPTH = 4
_PHONE = re.compile(r"^(?:1[3-9][0-9]{9}|\+[1-9][0-9]{6,14})$")
_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}$")
_ACCOUNT_NO = r"^[0-9A-Za-z]+$"

_TEXT = "characters, not blank, without control characters"
_MESSAGES: dict[str, str] = {
    "merchantNo": "must be 1 to 32 characters of A-Z a-z 0-9 . _ : -",
    "name": f"must be 1 to 100 {_TEXT}",
    "type": "must be INDIVIDUAL or ENTERPRISE",
    "legalPerson": "must be an object with name, idType and idNumber",
    "legalPerson.name": f"must be 1 to 50 {_TEXT}",
    "legalPerson.idType": "must be RESIDENT_ID, PASSPORT or TRAVEL_PERMIT",
    "legalPerson.idNumber": "must be a valid number of the idType (a resident ID: 18 "
    "characters with its check character, X upper-case)",
    "licence": "must be an object with licenceNo (required for an ENTERPRISE, not allowed for "
    "an INDIVIDUAL)",
    "licence.licenceNo": "must be an 18-character unified social credit code with its check "
    "character",
    "licence.validUntil": "must be a date, YYYY-MM-DD",
    "contact": "must be an object with name and phone",
    "contact.name": f"must be 1 to 50 {_TEXT}",
    "contact.phone": "must be a mainland mobile number (11 digits) or + and 7 to 15 digits",
    "contact.email": "must be an e-mail address of at most 254 characters",
    "notifyUrl": "must be an http(s) URL of at most 512 ASCII characters, without user info",
    "accountNo": "must be 1 to 34 characters of A-Z a-z 0-9",
    "accountName": f"must be 1 to 100 {_TEXT}",
    "bankName": f"must be 1 to 120 {_TEXT}",
    "amount": f"must be an integer of fen from 1 to {MAX_MICRO_DEPOSIT}",
}
NOTIFY_URL_NOT_ALLOWED = (
    "must not point to a loopback, private, link-local, multicast or reserved address "
    "(in any notation) or to localhost"
)


class InvalidMerchant(InvalidBody):
    """A refused merchant request: ``"<field>: <message>"`` is the wire ``msg`` of its E001."""


def _plain_text(value: str) -> str:
    """Names go to the depository as they are: refuse blank ones and control characters."""
    if not value.strip() or has_control(value):
        raise ValueError("blank or control characters")
    return value


def _email(value: str) -> str:
    if len(value) > 254 or not _EMAIL.fullmatch(value):
        raise ValueError("not an e-mail address")
    return value


def _valid_until(value: str) -> str:
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ValueError("not YYYY-MM-DD")
    date.fromisoformat(value)  # ValueError for a date that does not exist
    return value


def _licence_no(value: str) -> str:
    if not is_uscc(value):
        raise ValueError("not a unified social credit code")
    return value


PlainText = Annotated[str, AfterValidator(_plain_text)]
IdType = Literal["RESIDENT_ID", "PASSPORT", "TRAVEL_PERMIT"]
MerchantType = Literal["INDIVIDUAL", "ENTERPRISE"]


class LegalPerson(StrictBody):
    name: Annotated[PlainText, Field(min_length=1, max_length=50)]
    id_type: IdType
    id_number: Annotated[str, Field(min_length=1, max_length=20)]

    @model_validator(mode="after")
    def _number_fits_type(self) -> Self:
        if not _ID_CHECKS[self.id_type](self.id_number):
            raise _FieldError("idNumber")
        return self


def _is_passport(number: str) -> bool:
    return PASSPORT.fullmatch(number) is not None


def _is_travel_permit(number: str) -> bool:
    return TRAVEL_PERMIT.fullmatch(number) is not None


_ID_CHECKS: dict[str, Callable[[str], bool]] = {
    "RESIDENT_ID": is_resident_id,
    "PASSPORT": _is_passport,
    "TRAVEL_PERMIT": _is_travel_permit,
}


class Licence(StrictBody):
    licence_no: Annotated[str, Field(min_length=18, max_length=18), AfterValidator(_licence_no)]
    valid_until: Annotated[str, Field(max_length=10), AfterValidator(_valid_until)] | None = None


class Contact(StrictBody):
    name: Annotated[PlainText, Field(min_length=1, max_length=50)]
    phone: Annotated[str, Field(max_length=16, pattern=_PHONE.pattern)]
    email: Annotated[str, AfterValidator(_email)] | None = None


class Materials(StrictBody):
    """One version of what the depository reviews (``POST …/materials``)."""

    name: Annotated[PlainText, Field(min_length=1, max_length=100)]
    type: MerchantType
    legal_person: LegalPerson
    licence: Licence | None = None
    contact: Contact

    @model_validator(mode="after")
    def _licence_fits_type(self) -> Self:
        if (self.type == "ENTERPRISE") != (self.licence is not None):
            raise _FieldError("licence")
        return self


class Registration(Materials):
    """``POST /v1/merchants``: the first version of the material, and the merchant's own."""

    merchant_no: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._:-]+$")]
    notify_url: Annotated[str, Field(max_length=512), AfterValidator(check_url_shape)] | None = None

    def materials(self) -> Materials:
        return Materials.model_validate(
            self.model_dump(exclude={"merchant_no", "notify_url"}), by_name=True
        )


class SettlementAccount(StrictBody):
    """``POST …/settlement-account``: where the merchant's withdrawals are to go."""

    account_no: Annotated[str, Field(min_length=1, max_length=34, pattern=_ACCOUNT_NO)]
    account_name: Annotated[PlainText, Field(min_length=1, max_length=100)]
    bank_name: Annotated[PlainText, Field(min_length=1, max_length=120)]


class Confirmation(StrictBody):
    """``POST …/settlement-account/verify``: the micro-deposit's amount, as the merchant saw it."""

    amount: Annotated[int, Field(ge=1, le=MAX_MICRO_DEPOSIT)]


class _FieldError(ValueError):
    """A cross-field rule that blames one field (read by ``_refusal``)."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


M = TypeVar("M", bound=StrictBody)

PUBLIC_ONLY = CallbackAddresses()


def parse_registration(raw: bytes, callbacks: CallbackAddresses | None = None) -> Registration:
    """A raw ``POST /v1/merchants`` body; ``callbacks`` is where ``notifyUrl`` may point
    (public addresses only unless the operator allows a range, as for payouts)."""
    registration = _parse(raw, Registration)
    if registration.notify_url is not None:
        host = urlsplit(registration.notify_url).hostname or ""
        if (callbacks or PUBLIC_ONLY).host_refusal(host) is not None:
            raise InvalidMerchant("notifyUrl", NOTIFY_URL_NOT_ALLOWED)
    return registration


def parse_materials(raw: bytes) -> Materials:
    return _parse(raw, Materials)


def parse_settlement_account(raw: bytes) -> SettlementAccount:
    return _parse(raw, SettlementAccount)


def parse_confirmation(raw: bytes) -> Confirmation:
    return _parse(raw, Confirmation)


def _parse(raw: bytes, model: type[M]) -> M:
    try:
        document = parse_object(raw, max_keys=_MAX_KEYS, max_depth=_MAX_DEPTH)
    except InvalidBody as exc:
        raise InvalidMerchant(exc.field, exc.message) from None
    try:
        return model.model_validate(document, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise _refusal(exc) from None


def _refusal(exc: ValidationError) -> InvalidMerchant:
    """The first error, naming its field; a cross-field rule names the field it blames."""
    error = exc.errors(include_url=False, include_input=False)[0]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, _FieldError):
        loc = [str(part) for part in error["loc"]]
        field = ".".join([*loc, cause.field])
        return InvalidMerchant(field, _MESSAGES.get(field, "invalid"))
    first = first_error(exc, _MESSAGES)
    return InvalidMerchant(first.field, first.message)
