"""Every careCycle lead field, declared once (pure: no I/O, no logging, no Singer, no HTTP).

The contract is docs/carecycle-api.md ("Record fields" for what an upload may carry,
"Responses" for what careCycle sends back). Each field is one `FieldSpec` in `FIELDS`; every
other list of fields is derived from that table by the functions below: the fields an upload
may carry (`LEAD_FIELDS`, read by leads.py and mapping.py), the personal ones (`PERSONAL_FIELDS`:
masked in dry-run samples, scrubbed from careCycle's answers by client.py, never logged), the
column aliases (`ALIASES`, mapping.py), and the field table of docs/mapping.md
(`markdown_table`, written by scripts/registry_tables.py). The sandbox keeps its own copy of the
upload rules on purpose; tests/test_fields.py checks that copy against this table.

A new field is one `FieldSpec` here plus its tests. `personal` has no default: whoever adds a
field must decide, and tests/test_fields.py fails when a name looks personal but is not marked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import KW_ONLY, dataclass
from types import MappingProxyType

__all__ = [
    "ALIASES",
    "BOOLEAN_FIELDS",
    "FIELDS",
    "GENDERS",
    "INT32_MAX",
    "INT32_MIN",
    "KINDS",
    "LEAD_FIELDS",
    "MARITAL_STATUSES",
    "MAX_CUSTOM_FIELDS",
    "PERSONAL_FIELDS",
    "RESPONSE_FIELDS",
    "FieldSpec",
    "alias_table",
    "fields_of_kind",
    "markdown_table",
    "personal_fields",
    "upload_fields",
]

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
MAX_CUSTOM_FIELDS = 50
GENDERS = ("Male", "Female", "Non-Binary", "Other", "Prefer Not to Say")
MARITAL_STATUSES = (
    "Single",
    "Married",
    "Divorced",
    "Widowed",
    "Separated",
    "Domestic Partnership",
)
KINDS = (
    "phone",
    "postal_code",
    "timezone",
    "date",
    "enum",
    "boolean",
    "integer",
    "number",
    "string",
    "custom_fields",
)
"""The contract's value kinds; each has a normaliser in leads.py (strings may name their own)."""


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One careCycle lead field: how it is checked, whether it is personal, what maps to it.

    `personal` is keyword-only and has no default, so a field cannot be declared without
    deciding whether its values identify a person (never logged, masked, scrubbed).
    `normaliser` names a normaliser of leads.py when the kind's own is not enough
    (`email`, `us_state`, `mbi`, `gender`, `marital_status`); `upload` is False for fields
    only careCycle's answers carry.
    """

    name: str
    kind: str
    _: KW_ONLY
    personal: bool
    max_length: int | None = None
    choices: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    normaliser: str | None = None
    upload: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind {self.kind!r} is not one of {KINDS}")
        if (self.kind == "enum") != bool(self.choices):
            raise ValueError(f"{self.name}: an enum has choices, and only an enum")

    @property
    def normaliser_name(self) -> str:
        """The leads.py normaliser for this field: its own, else its kind's."""
        return self.normaliser or self.kind


def _text(
    name: str,
    limit: int | None,
    *,
    personal: bool,
    aliases: tuple[str, ...] = (),
    normaliser: str | None = None,
    upload: bool = True,
) -> FieldSpec:
    """A text field of at most `limit` characters (None: no limit in the contract)."""
    return FieldSpec(
        name,
        "string",
        personal=personal,
        max_length=limit,
        aliases=aliases,
        normaliser=normaliser,
        upload=upload,
    )


def _flag(name: str, *aliases: str) -> FieldSpec:
    """A yes/no field of the lead (consent, eligibility): never personal by itself."""
    return FieldSpec(name, "boolean", personal=False, aliases=aliases)


# In the contract's order (docs/carecycle-api.md, "Record fields"), which is also the order
# `streams` setting suggestions and automatic mapping try them in. Aliases are in priority
# order: when two record keys map to one field, the exact name wins, then the first alias.
FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("phoneNumber", "phone", personal=True, aliases=(
        "phone_number", "phone", "mobile", "mobile_phone", "cell", "cell_phone",
        "mobile_number", "cell_number", "telephone", "primary_phone")),
    FieldSpec("postalCode", "postal_code", personal=True, aliases=(
        "postal_code", "zip", "zip_code", "zipcode", "postcode", "zip5")),
    FieldSpec("timezone", "timezone", personal=False, aliases=("time_zone", "tz")),
    _text("firstName", 255, personal=True, aliases=(
        "first_name", "firstname", "fname", "given_name", "first")),
    _text("lastName", 255, personal=True, aliases=(
        "last_name", "lastname", "lname", "surname", "family_name", "last")),
    _text("email", 255, personal=True, aliases=("email_address", "e_mail"), normaliser="email"),
    _text("city", 255, personal=True),
    _text("county", 255, personal=False),
    _text("address", 255, personal=True, aliases=(
        "address1", "address_1", "address_line_1", "street", "street_address", "street1")),
    _text("address2", 255, personal=True, aliases=(
        "address_2", "address_line_2", "street2", "apt", "suite")),
    _text("state", 50, personal=False, aliases=("state_code", "province"), normaliser="us_state"),
    _text("language", 50, personal=False, aliases=("preferred_language", "lang")),
    _text("filingStatus", 50, personal=False, aliases=("filing_status", "tax_filing_status")),
    FieldSpec("dateOfBirth", "date", personal=True, aliases=(
        "date_of_birth", "dob", "birth_date", "birthdate", "birthday")),
    FieldSpec("gender", "enum", personal=False, choices=GENDERS, aliases=("sex",),
              normaliser="gender"),
    FieldSpec("maritalStatus", "enum", personal=False, choices=MARITAL_STATUSES,
              aliases=("marital_status",), normaliser="marital_status"),
    FieldSpec("dependentCount", "integer", personal=False, aliases=(
        "dependent_count", "dependents", "number_of_dependents", "num_dependents")),
    FieldSpec("householdIncome", "integer", personal=False, aliases=(
        "household_income", "annual_income", "income")),
    _flag("isDecisionMaker", "is_decision_maker", "decision_maker"),
    _flag("medicaid", "has_medicaid"),
    _flag("veteran", "is_veteran"),
    _flag("socialSecurityDisability", "social_security_disability", "ssdi"),
    _flag("doNotCall", "do_not_call", "dnc"),
    _flag("doNotSMS", "do_not_sms", "do_not_text"),
    _flag("doNotEmail", "do_not_email"),
    _flag("doNotMail", "do_not_mail"),
    _text("medicaidNumber", 255, personal=True, aliases=("medicaid_number", "medicaid_id")),
    _text("vaNumber", 255, personal=True, aliases=("va_number",)),
    _text("carrierAssignedCustomerId", 255, personal=True, aliases=(
        "carrier_assigned_customer_id", "carrier_customer_id")),
    _text("healthSherpaCustomerId", 255, personal=True, aliases=(
        "health_sherpa_customer_id", "healthsherpa_id")),
    _text("mbiNumber", 255, personal=True, aliases=(
        "mbi_number", "mbi", "medicare_beneficiary_identifier"), normaliser="mbi"),
    # The record's own ID: logs name records by it (never by personal data), by design.
    _text("externalId", 255, personal=False, aliases=("external_id",)),
    _text("sourceId", None, personal=False, aliases=("source_id",)),
    FieldSpec("leadCost", "number", personal=False, aliases=("lead_cost",)),
    # Free-form: a custom field can hold anything (an SSN, a spouse's name), so every value is
    # personal; its fieldKey (set up in careCycle's settings) is not (outcomes.mask_lead, Scrubber).
    FieldSpec("customFields", "custom_fields", personal=True),
    # Only in careCycle's answers ("Responses": each result is the customer record).
    _text("id", None, personal=False, upload=False),
    _text("status", None, personal=False, upload=False),
    _text("createdAt", None, personal=False, upload=False),
    _text("updatedAt", None, personal=False, upload=False),
)  # fmt: skip


# --------------------------------------------------------------------------- derivations
# Each takes the table as an argument, so a test can derive from a table with one more field.


def upload_fields(fields: Iterable[FieldSpec]) -> Mapping[str, FieldSpec]:
    """Name -> spec of every field an upload may carry, in the table's order (read-only)."""
    return MappingProxyType({spec.name: spec for spec in fields if spec.upload})


def personal_fields(fields: Iterable[FieldSpec]) -> frozenset[str]:
    """Names of the fields whose values identify a person."""
    return frozenset(spec.name for spec in fields if spec.personal)


def fields_of_kind(fields: Iterable[FieldSpec], kind: str) -> tuple[str, ...]:
    """Names of the upload fields of one kind, in the table's order."""
    return tuple(spec.name for spec in fields if spec.upload and spec.kind == kind)


def alias_table(fields: Iterable[FieldSpec]) -> Mapping[str, str]:
    """Column alias -> upload field, in priority order (read-only).

    Raises ValueError when one alias is given to two fields: a column would map to either.
    """
    table: dict[str, str] = {}
    for spec in fields:
        if not spec.upload:
            continue
        for alias in spec.aliases:
            if table.setdefault(alias, spec.name) != spec.name:
                raise ValueError(f"alias {alias!r} is given to {table[alias]} and {spec.name}")
    return MappingProxyType(table)


def _type_text(spec: FieldSpec) -> str:
    if spec.kind == "string":
        return f"text, at most {spec.max_length}" if spec.max_length else "text"
    if spec.kind == "enum":
        return "one of " + ", ".join(f"`{choice}`" for choice in spec.choices)
    if spec.kind == "custom_fields":
        return f"list of at most {MAX_CUSTOM_FIELDS} `{{fieldKey, value}}`"
    return spec.kind.replace("_", " ")


def _aliases_text(spec: FieldSpec) -> str:
    if spec.kind == "custom_fields":
        return "none: set with `custom_fields`"
    return ", ".join(f"`{alias}`" for alias in spec.aliases) or "its own name only"


def markdown_table(fields: Iterable[FieldSpec]) -> str:
    """The lead-field table of docs/mapping.md: one row per upload field, then the others."""
    fields = tuple(fields)
    lines = [
        "| lead field | type | personal | column names that map to it (in priority order) |",
        "|---|---|---|---|",
    ]
    for spec in fields:
        if spec.upload:
            personal = "yes" if spec.personal else "no"
            row = (f"`{spec.name}`", _type_text(spec), personal, _aliases_text(spec))
            lines.append("| " + " | ".join(row) + " |")
    answers = [f"`{spec.name}`" for spec in fields if not spec.upload]
    if answers:
        lines += ["", f"Only in careCycle's answers, never mapped or sent: {', '.join(answers)}."]
    return "\n".join(lines) + "\n"


LEAD_FIELDS: Mapping[str, FieldSpec] = upload_fields(FIELDS)
"""Every field an upload may carry, in the contract's order."""
RESPONSE_FIELDS: tuple[str, ...] = tuple(spec.name for spec in FIELDS if not spec.upload)
"""Fields only careCycle's answers carry (never sent, never mapped)."""
PERSONAL_FIELDS: frozenset[str] = personal_fields(FIELDS)
"""Lead fields that identify a person: never logged, masked in dry-run samples, scrubbed."""
BOOLEAN_FIELDS: tuple[str, ...] = fields_of_kind(FIELDS, "boolean")
ALIASES: Mapping[str, str] = alias_table(FIELDS)
"""Column name -> lead field, in priority order (matched ignoring case, spaces, - and _)."""
