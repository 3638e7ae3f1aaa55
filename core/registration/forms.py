"""The seven forms of the regulation (Mẫu 01–07) as records, and the checking of untrusted input.

A record is what one paper form holds, field for field (docs/registration.md lists them). Every
field may be blank in a record: a blank form is printed and completed by hand, and a draft is kept
half filled. Which fields a submission must have is the validation's business: `validate(kind,
data)` turns a dict from a web form or JSON into a record, or into (field, message) pairs naming
everything wrong at once. Labels, titles and messages are English msgids of the catalogues (`N_`,
`Text`): the console shows them in its reader's language; the `.docx` letters (letters.py) read the
titles in Vietnamese, the regulation's language, whoever downloads them. The identity of the
Department and the Centre is not in the records: it is configuration (`registration:`), printed by
letters.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, TypeVar

from lgsp.core.config import ApproversConfig
from lgsp.core.i18n import N_, Text, gettext
from lgsp.core.registration.checks import (
    is_valid_abbreviation,
    is_valid_email,
    is_valid_phone,
    normalize_email,
    normalize_text,
    text_problem,
)
from lgsp.core.registration.workdays import VIETNAM_TZ

# The parties of the process: any agency, the Department of Science and Technology, its Centre.
Role = Literal["agency", "department", "centre"]
Kind = Literal["text", "number", "reference", "abbreviation", "email", "phone", "date", "datetime", "lines",
               "group"]

# Dates in these forms are dates of this process (the regulation dates from 2025): a year outside
# this range is a typing mistake, not a real letter.
FIRST_YEAR, LAST_YEAR = 2000, 2099

_NUMBER = re.compile(r"^[0-9]{1,10}$")
# "125/SYT-VP", "12/2025/QĐ-UBND", "45/BB-TTCNTT": a number and at least one symbol part.
_REFERENCE = re.compile(r"^[0-9]{1,10}(?:/[^\W_]+(?:[-.][^\W_]+)*)+$")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_ISO_MINUTE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2}))?([+-]\d{2}:\d{2}|Z)?$")


class FieldError(NamedTuple):
    """One problem with one field: its dotted path (`contact.email`, `legal_bases[1]`) and a message."""

    field: str
    message: str


class FormKindError(ValueError):
    """A form kind that is not one of "01".."07" (a caller's mistake, not a person's)."""


@dataclass(frozen=True)
class FieldSpec:
    """How one field is checked: its label (a msgid, translated where shown), kind and bounds."""

    label: str
    kind: Kind
    required: bool = False
    max_length: int = 0
    max_items: int = 0
    # For a group: which of its fields are required where it is used (a party A need not say whom it
    # represents, it is the operator; a party B must).
    require: tuple[str, ...] = ()


def _spec(default: Any, spec: FieldSpec) -> Any:
    if isinstance(default, type):
        return field(default_factory=default, metadata={"form": spec})
    return field(default=default, metadata={"form": spec})


def _text(label: str, max_length: int, *, required: bool = False,
          kind: Kind = "text") -> Any:
    return _spec(None, FieldSpec(label, kind, required, max_length=max_length))


def _date(label: str, *, required: bool = False) -> Any:
    return _spec(None, FieldSpec(label, "date", required))


def _lines(label: str, max_items: int, max_length: int) -> Any:
    return _spec((), FieldSpec(label, "lines", max_items=max_items, max_length=max_length))


def _group(cls: type, label: str, *, require: tuple[str, ...] = ()) -> Any:
    return _spec(cls, FieldSpec(label, "group", bool(require), require=require))


NAME = 200      # names of bodies and applications
PERSON = 100    # names and positions of people
ABBR = 30
PLACE = 100
LINE = 500      # one legal basis or recipient
EMAIL = 254     # RFC 5321's limit on a path
PHONE = 30


# -- the parts forms share --------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Contact:
    """The agency's contact person (cán bộ đầu mối)."""

    name: str | None = _text(N_("Full name"), PERSON)
    position: str | None = _text(N_("Position"), PERSON)
    department: str | None = _text(N_("Department"), NAME)
    email: str | None = _text(N_("Email"), EMAIL, kind="email")
    phone: str | None = _text(N_("Phone"), PHONE, kind="phone")


@dataclass(frozen=True, kw_only=True)
class SupportContact:
    """The Centre's technical support contact (đầu mối hỗ trợ kỹ thuật), as forms 02 and 04 give it."""

    name: str | None = _text(N_("Full name"), PERSON)
    department: str | None = _text(N_("Department"), NAME)
    phone: str | None = _text(N_("Phone"), PHONE, kind="phone")


@dataclass(frozen=True, kw_only=True)
class DocumentRef:
    """An earlier letter: its number and symbol (125/SYT-VP) and its date."""

    number: str | None = _text(N_("Number and symbol"), 50, kind="reference")
    issued_on: dt.date | None = _date(N_("Date"))


@dataclass(frozen=True, kw_only=True)
class Signer:
    """Who signs. `on_behalf_of` is the head's title when a deputy signs for them ("KT. GIÁM ĐỐC")."""

    title: str | None = _text(N_("Signer's position"), PERSON)
    name: str | None = _text(N_("Signer's full name"), PERSON)
    on_behalf_of: str | None = _text(N_("Signing on behalf of"), PERSON)


@dataclass(frozen=True, kw_only=True)
class Party:
    """One side of the handover record."""

    name: str | None = _text(N_("Full name"), PERSON)
    position: str | None = _text(N_("Position"), PERSON)
    representing: str | None = _text(N_("Representing"), NAME)


@dataclass(frozen=True, kw_only=True)
class Letter:
    """What every official letter of the set carries besides its content.

    The number is usually given by the registry office (văn thư) when the letter is signed, so it
    may stay blank; so may the place and date. `archive_unit` follows "Lưu: VT," at the foot."""

    number: str | None = _text(N_("Letter number"), 10, kind="number")
    place: str | None = _text(N_("Place"), PLACE)
    issued_on: dt.date | None = _date(N_("Date of issue"))
    signer: Signer = _group(Signer, N_("Signer"))
    copies_to: tuple[str, ...] = _lines(N_("Other recipients"), 10, LINE)
    archive_unit: str | None = _text(N_("Drafting unit, number of archived copies"), ABBR)


@dataclass(frozen=True, kw_only=True)
class AgencyLetter(Letter):
    """A request from an agency (Mẫu 01, 03, 06): its heading and its contact person."""

    agency: str | None = _text(N_("Agency or unit name"), NAME, required=True)
    parent_body: str | None = _text(N_("Governing body"), NAME)
    abbreviation: str | None = _text(N_("Agency abbreviation"), ABBR, kind="abbreviation")
    contact: Contact = _group(Contact, N_("Contact person"), require=("name", "email", "phone"))


@dataclass(frozen=True, kw_only=True)
class ReplyLetter(Letter):
    """An answer of the Department or the Centre (Mẫu 02, 04, 07) to an agency's request."""

    agency: str | None = _text(N_("Receiving agency or unit"), NAME, required=True)
    request: DocumentRef = _group(DocumentRef, N_("The agency's request letter"), require=("number", "issued_on"))


# -- the seven forms --------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Form01(AgencyLetter):
    """Mẫu 01: an agency registers an application or service with the hub."""

    legal_bases: tuple[str, ...] = _lines(N_("Legal basis of the application or service"), 10, LINE)
    application_name: str | None = _text(N_("Application or service name"), NAME, required=True)
    application_abbreviation: str | None = _text(N_("Abbreviation"), ABBR)
    developer: str | None = _text(N_("Developer"), NAME, required=True)


@dataclass(frozen=True, kw_only=True)
class Form02(ReplyLetter):
    """Mẫu 02: the registration is done; the Centre's support contact."""

    support_contact: SupportContact = _group(SupportContact, N_("Technical support contact"), require=("name", "phone"))


@dataclass(frozen=True, kw_only=True)
class Form03(AgencyLetter):
    """Mẫu 03: an agency asks for an admin account, technical documents and a support contact."""

    legal_bases: tuple[str, ...] = _lines(N_("Legal basis"), 10, LINE)


@dataclass(frozen=True, kw_only=True)
class Form04(ReplyLetter):
    """Mẫu 04: the Centre provides the account and documents (handed over by Mẫu 05)."""

    support_contact: SupportContact = _group(SupportContact, N_("Technical support contact"), require=("name", "phone"))


@dataclass(frozen=True, kw_only=True)
class Form05:
    """Mẫu 05: the record (biên bản) of the handover, signed by both parties.

    `handover_at` is Vietnam time (a time given without a zone is taken as Vietnam time)."""

    number: str | None = _text(N_("Record number"), 10, kind="number")
    form_04: DocumentRef = _group(DocumentRef, N_("Letter providing the account (form 04)"),
                                  require=("number", "issued_on"))
    form_03: DocumentRef = _group(DocumentRef, N_("Request letter (form 03)"), require=("number", "issued_on"))
    handover_at: dt.datetime | None = _spec(None, FieldSpec(N_("Handover time"), "datetime", True))
    handover_place: str | None = _text(N_("Handover place"), LINE, required=True)
    party_a: Party = _group(Party, N_("Handing-over party (party A)"), require=("name", "position"))
    party_b: Party = _group(Party, N_("Receiving party (party B)"), require=("name", "position", "representing"))


@dataclass(frozen=True, kw_only=True)
class Form06(AgencyLetter):
    """Mẫu 06: an agency asks to cancel the registration of an application that stopped operating."""

    application_name: str | None = _text(N_("Application or service name"), NAME, required=True)
    application_abbreviation: str | None = _text(N_("Abbreviation"), ABBR)


@dataclass(frozen=True, kw_only=True)
class Form07(ReplyLetter):
    """Mẫu 07: the registration is cancelled and its rights revoked."""


FormRecord = Form01 | Form02 | Form03 | Form04 | Form05 | Form06 | Form07
F = TypeVar("F", bound=FormRecord)


@dataclass(frozen=True)
class FormKind:
    """One form: its record, its title (a msgid; `gettext(title, "vi")` in a letter), its subject line
    and its place in the process.

    `sender` and `recipient` are forms.md's defaults; who issues a reply (and so receives its request)
    is configurable (`registration.approvers`): see `sender_of` and `recipient_of`."""

    kind: str
    record: type[FormRecord]
    title: str
    subject: str                 # after "V/v " (or "Về việc " in a record), exactly as the regulation has it
    sender: Role
    recipient: Role
    answers: str | None          # the kind this form answers
    answered_by: str | None      # the kind that answers it
    document: Literal["letter", "record"]

    @property
    def subject_line(self) -> str:
        return ("Về việc " if self.document == "record" else "V/v ") + self.subject


_REGISTER = "đăng ký thông tin ứng dụng, dịch vụ kết nối với Trục liên thông tỉnh"
_ACCOUNT = "tài khoản quản trị, tài liệu kỹ thuật và đầu mối hỗ trợ kỹ thuật kết nối với Trục liên thông tỉnh"

FORM_KINDS: dict[str, FormKind] = {k.kind: k for k in (
    FormKind("01", Form01, N_("Registration of an application or service connected to the provincial integration axis"),
             _REGISTER, "agency", "department", None, "02", "letter"),
    FormKind("02", Form02, N_("Approval of the registration of an application or service"),
             _REGISTER, "department", "agency", "01", None, "letter"),
    FormKind("03", Form03, N_("Request for an admin account, technical documents and a technical support contact"),
             "đề nghị cung cấp " + _ACCOUNT, "agency", "centre", None, "04", "letter"),
    FormKind("04", Form04, N_("Provision of an admin account, technical documents and a technical support contact"),
             "cung cấp " + _ACCOUNT, "centre", "agency", "03", "05", "letter"),
    FormKind("05", Form05, N_("Record of the handover of the system admin account and technical documents"),
             "bàn giao tài khoản quản trị hệ thống, tài liệu kỹ thuật Trục liên thông tỉnh",
             "centre", "agency", "04", None, "record"),
    FormKind("06", Form06, N_("Request to cancel a registered application or service"),
             "đề nghị hủy bỏ thông tin đã đăng ký ứng dụng, dịch vụ kết nối với Trục liên thông tỉnh",
             "agency", "department", None, "07", "letter"),
    FormKind("07", Form07, N_("Cancellation of an application or service"),
             "hủy bỏ thông tin ứng dụng, dịch vụ kết nối với Trục liên thông tỉnh",
             "department", "agency", "06", None, "letter"),
)}


def form_kind(kind: str) -> FormKind:
    try:
        return FORM_KINDS[kind]
    except KeyError:
        raise FormKindError(f"no form {kind!r}: the kinds are {', '.join(FORM_KINDS)}") from None


def kind_of(record: FormRecord) -> FormKind:
    for fk in FORM_KINDS.values():
        if type(record) is fk.record:
            return fk
    raise TypeError(f"not a form record: {type(record).__name__}")


def sender_of(kind: str, approvers: ApproversConfig) -> Role:
    """Who issues a form of this kind, with the configured approver of each reply step."""
    fk = form_kind(kind)
    if fk.sender == "agency":
        return "agency"
    issuer: Role = getattr(approvers, f"form_{fk.kind}")
    return issuer


def recipient_of(kind: str, approvers: ApproversConfig) -> Role:
    """Whom a form of this kind is addressed to: a request goes to whoever issues its answer."""
    fk = form_kind(kind)
    if fk.answered_by is not None and fk.sender == "agency":
        return sender_of(fk.answered_by, approvers)
    return fk.recipient


# -- validation -------------------------------------------------------------------------------

MESSAGES = {
    "required": N_("Not filled in (required)."),
    "type": N_("Must be text."),
    "utf-8": N_("Not valid UTF-8 text."),
    "control": N_("Contains control characters that are not allowed (line breaks, tabs, hidden characters)."),
    "too_long": N_("Longer than {n} characters."),
    "too_many": N_("At most {n} items."),
    "unknown": N_("This form has no such field."),
    "not_group": N_("Must be a group of fields."),
    "not_list": N_("Must be a list, or text with one item a line."),
    "number": N_("A letter number is digits only (for example 125)."),
    "reference": N_("The letter's number and symbol are not in the right form (for example 125/SYT-VP)."),
    "abbreviation": N_("An abbreviation is letters, digits and hyphens only (for example SYT-VP)."),
    "email": N_("Not a valid email address."),
    "phone": N_("Not a valid phone number."),
    "date": N_("Write the date as year-month-day, for example 2026-03-05."),
    "no_such_day": N_("This day is not in the calendar."),
    "year": N_("The year must be from {first} to {last}."),
    "datetime": N_("Write the time as year-month-day hour:minute, for example 2026-03-05 09:30."),
    "conflict": N_("The field is given twice (as a group and with a dot)."),
    "not_mapping": N_("The data must be a mapping of field names to values."),
}


class _Bad(Exception):
    def __init__(self, code: str, **args: object) -> None:
        super().__init__(code)
        self.message = Text(MESSAGES[code], **args)


def validate(kind: str, data: object) -> FormRecord | list[FieldError]:
    """The record of form `kind` ("01".."07") from untrusted input, or every problem with it."""
    return parse_form(form_kind(kind).record, data)


def parse_form(cls: type[F], data: object) -> F | list[FieldError]:
    """`data` is a mapping of field names to values as a web form or JSON gives them: text (or
    UTF-8 bytes), ISO dates, lists of lines (or one text, a line each), and groups either nested
    (`{"contact": {"email": …}}`) or dotted (`{"contact.email": …}`)."""
    if not isinstance(data, Mapping):
        return [FieldError("", Text(MESSAGES["not_mapping"]))]
    errors: list[FieldError] = []
    nested = _nest(data, "", errors)
    values = _parse_fields(cls, nested, "", None, errors)
    if errors:
        return errors
    record = cls(**values)
    errors.extend(_order_errors(record))
    return errors or record


def _nest(data: Mapping[Any, object], prefix: str, errors: list[FieldError]) -> dict[str, object]:
    """Dotted keys (`contact.email`, as HTML form fields are named) folded into groups."""
    out: dict[str, object] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            errors.append(FieldError(prefix + repr(key), Text(MESSAGES["unknown"])))
            continue
        head, _, rest = key.partition(".")
        if isinstance(value, Mapping):
            value = _nest(value, f"{prefix}{key}.", errors)
        if rest:
            value = _nest({rest: value}, f"{prefix}{head}.", errors)
        before = out.get(head)
        if head not in out:
            out[head] = value
        elif isinstance(before, dict) and isinstance(value, dict) and not before.keys() & value.keys():
            out[head] = {**before, **value}
        else:
            errors.append(FieldError(prefix + key, Text(MESSAGES["conflict"])))
    return out


def _specs(cls: type) -> Iterator[tuple[dataclasses.Field[Any], FieldSpec, Any]]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        yield f, f.metadata["form"], hints[f.name]


def _parse_fields(cls: type, data: Mapping[str, object], prefix: str, require: tuple[str, ...] | None,
                  errors: list[FieldError]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            errors.append(FieldError(prefix + key, Text(MESSAGES["unknown"])))
    values: dict[str, Any] = {}
    for f, spec, hint in _specs(cls):
        path = prefix + f.name
        raw = data.get(f.name)
        required = spec.required if require is None else f.name in require
        if spec.kind == "group":
            if raw is None:
                raw = {}
            if not isinstance(raw, Mapping):
                errors.append(FieldError(path, Text(MESSAGES["not_group"])))
                continue
            group_cls = hint
            values[f.name] = group_cls(**_parse_fields(group_cls, raw, path + ".", spec.require, errors))
            continue
        try:
            value = _parse_value(spec, raw, path, errors)
        except _Bad as bad:
            errors.append(FieldError(path, bad.message))
            continue
        if required and value in (None, ()):
            errors.append(FieldError(path, Text(MESSAGES["required"])))
            continue
        values[f.name] = value
    return values


def _parse_value(spec: FieldSpec, raw: object, path: str, errors: list[FieldError]) -> Any:
    if spec.kind == "lines":
        return _parse_lines(spec, raw, path, errors)
    if spec.kind == "date":
        return _parse_date(raw)
    if spec.kind == "datetime":
        return _parse_datetime(raw)
    text = _parse_text(raw, spec.max_length)
    if text is None:
        return None
    if spec.kind == "number" and not _NUMBER.match(text):
        raise _Bad("number")
    if spec.kind == "reference" and not _REFERENCE.match(text):
        raise _Bad("reference")
    if spec.kind == "abbreviation" and not is_valid_abbreviation(text):
        raise _Bad("abbreviation")
    if spec.kind == "email":
        if not is_valid_email(text):
            raise _Bad("email")
        return normalize_email(text)
    if spec.kind == "phone" and not is_valid_phone(text):
        raise _Bad("phone")
    return text


def _parse_text(raw: object, max_length: int) -> str | None:
    """One line of text, NFC and trimmed; None when blank."""
    if raw is None:
        return None
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise _Bad("utf-8") from None
    problem = text_problem(raw)
    if problem:
        raise _Bad(problem)
    assert isinstance(raw, str)
    text = normalize_text(raw)
    if not text:
        return None
    if len(text) > max_length:
        raise _Bad("too_long", n=max_length)
    return text


def _parse_lines(spec: FieldSpec, raw: object, path: str, errors: list[FieldError]) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise _Bad("utf-8") from None
    if isinstance(raw, str):
        # A textarea: one item a line (the only place a line break is welcome).
        items: list[object] = list(raw.replace("\r\n", "\n").split("\n"))
    elif isinstance(raw, (list, tuple)):
        items = list(raw)
    else:
        raise _Bad("not_list")
    out: list[str] = []
    failed = False
    for i, item in enumerate(items):
        try:
            text = _parse_text(item, spec.max_length)
        except _Bad as bad:
            errors.append(FieldError(f"{path}[{i}]", bad.message))
            failed = True
            continue
        if text is not None:
            out.append(text)
    if len(out) > spec.max_items:
        raise _Bad("too_many", n=spec.max_items)
    return () if failed else tuple(out)


def _check_year(year: int) -> None:
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise _Bad("year", first=FIRST_YEAR, last=LAST_YEAR)


def _parse_date(raw: object) -> dt.date | None:
    if isinstance(raw, dt.datetime):
        raise _Bad("date")
    if isinstance(raw, dt.date):
        _check_year(raw.year)
        return raw
    text = _parse_text(raw, 40)  # the same character checks as any text
    if text is None:
        return None
    m = _ISO_DATE.match(text)
    if not m:
        raise _Bad("date")
    _check_year(int(m.group(1)))
    try:
        return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        raise _Bad("no_such_day") from None


def _parse_datetime(raw: object) -> dt.datetime | None:
    if isinstance(raw, dt.datetime):
        moment = raw
    else:
        if isinstance(raw, dt.date):
            raise _Bad("datetime")
        text = _parse_text(raw, 32)
        if text is None:
            return None
        m = _ISO_MINUTE.match(text)
        if not m:
            raise _Bad("datetime")
        _check_year(int(m.group(1)))
        try:
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise _Bad("no_such_day") from None
    moment = moment.replace(tzinfo=VIETNAM_TZ) if moment.tzinfo is None else moment.astimezone(VIETNAM_TZ)
    _check_year(moment.year)
    return moment


def _order_errors(record: FormRecord) -> list[FieldError]:
    """Dates that contradict each other: an answer dated before its request, a handover before the
    letter that announced it."""
    out = []
    if isinstance(record, ReplyLetter):
        asked = record.request.issued_on
        if record.issued_on and asked and record.issued_on < asked:
            out.append(FieldError("issued_on", Text("The date of issue is before the date of the request letter.")))
    if isinstance(record, Form05):
        asked, provided = record.form_03.issued_on, record.form_04.issued_on
        if asked and provided and provided < asked:
            out.append(FieldError("form_04.issued_on",
                                  Text("The form 04 letter is dated before the form 03 request letter.")))
        if provided and record.handover_at and record.handover_at.date() < provided:
            out.append(FieldError("handover_at", Text("The handover time is before the date of the form 04 letter.")))
    return out


def field_label(kind: str, path: str) -> str:
    """The label of a field path in the current language (`contact.email` → "Cán bộ đầu mối liên hệ –
    Thư điện tử" in Vietnamese), for messages shown away from the form."""
    cls: type = form_kind(kind).record
    labels = []
    for part in re.sub(r"\[\d+\]$", "", path).split("."):
        for f, spec, hint in _specs(cls):
            if f.name == part:
                labels.append(gettext(spec.label))
                cls = hint if spec.kind == "group" else cls
                break
        else:
            raise KeyError(path)
    return " – ".join(labels)
