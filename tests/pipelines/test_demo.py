"""The demo as `make demo` runs it: the repo's meltano.yml on the bundled sample (demo/data/).

Expectations are computed from the raw files here, independently of the target's code, and
checked lead by lead against what the sandbox stored.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from typing import Any

import phonenumbers
from pipeline_helpers import REPO_ROOT, MeltanoProject, by_external_id, custom_fields, stream_counts

from target_carecycle.sandbox import RunningSandbox

DATA = REPO_ROOT / "demo" / "data"
GENDERS = {"Male", "Female", "Non-Binary", "Other", "Prefer Not to Say"}
MARITAL = {"Single", "Married", "Divorced", "Widowed", "Separated", "Domestic Partnership"}


def digits10(phone: str) -> str | None:
    """The 10-digit NANP number in a phone string, or None."""
    digits = re.sub(r"\D", "", phone)
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    return digits if len(digits) == 10 else None


def fictional(national: str) -> bool:
    """555-0100..555-0199: reserved for fiction, never a real subscriber."""
    return national[3:6] == "555" and national[6:8] == "01"


def mmddyyyy(text: str) -> str | None:
    """ISO, M/D/YYYY or MM-DD-YYYY as careCycle's MM-DD-YYYY."""
    if not text:
        return None
    if m := re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", text):
        return f"{m[2]}-{m[3]}-{m[1]}"
    if m := re.fullmatch(r"(\d{1,2})[/-](\d{1,2})[/-](\d{4})", text):
        return f"{int(m[1]):02d}-{int(m[2]):02d}-{m[3]}"
    raise AssertionError(f"unexpected date format in the sample: {text!r}")


def expected_crm() -> tuple[dict[str, dict[str, Any]], int]:
    """Accepted CRM leads by Lead ID (the last row of a duplicate wins), and the reject count."""
    accepted: dict[str, dict[str, Any]] = {}
    rejected = 0
    with (DATA / "crm_leads.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            national = digits10(row["Phone"])
            if national is None or fictional(national) or not (row["Zip Code"] or row["Timezone"]):
                rejected += 1
                continue
            zip_code = row["Zip Code"].split("-")[0].zfill(5) if row["Zip Code"] else None
            accepted[row["Lead ID"]] = {
                "phoneNumber": f"+1{national}",
                "postalCode": zip_code,
                "dateOfBirth": mmddyyyy(row["DOB"]),
                "firstName": row["First Name"].strip(),
                "lastName": row["Last Name"].strip(),
                "city": row["City"],
                "state": row["State"],
            }
    return accepted, rejected


def expected_web() -> tuple[dict[str, dict[str, Any]], int]:
    """Accepted web-form leads by lead_id, and the reject count."""
    accepted: dict[str, dict[str, Any]] = {}
    rejected = 0
    for line in (DATA / "web_forms.jsonl").read_text(encoding="utf-8").splitlines():
        form = json.loads(line)
        national = digits10(form["contact"]["phone"])
        if national is None or fictional(national) or not form["address"]["zip"]:
            rejected += 1
            continue
        accepted[form["lead_id"]] = {
            "phoneNumber": f"+1{national}",
            "postalCode": form["address"]["zip"][:5],
            "dateOfBirth": mmddyyyy(form["profile"]["dob"]),
            "firstName": form["contact"]["first"],
            "email": form["contact"]["email"].lower(),
            "householdIncome": form["profile"]["annual_income"],
            "hasMedicaid": form["profile"]["on_medicaid"],
            "customFields": {
                "utm_source": form["utm_source"],
                "utm_campaign": form["utm_campaign"],
                "product_interest": form["interest"],
            },
        }
    return accepted, rejected


def test_sample_is_current_and_phones_are_valid() -> None:
    """The committed sample is what the generator makes; its phones are valid NANP numbers."""
    check = subprocess.run(
        [sys.executable, str(REPO_ROOT / "demo" / "generate_sample.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    crm, crm_rejected = expected_crm()
    web, web_rejected = expected_web()
    assert len(crm) + len(web) > 400
    assert crm_rejected >= 20 and web_rejected >= 5
    for lead in [*crm.values(), *web.values()]:
        number = phonenumbers.parse(lead["phoneNumber"])
        assert phonenumbers.is_valid_number(number), lead["phoneNumber"]


def test_demo_pipeline(
    meltano_project: MeltanoProject, sandbox: RunningSandbox, target_env: dict[str, str]
) -> None:
    """`meltano run tap-spreadsheets target-carecycle tap-jsonl target-carecycle`, as the demo."""
    result = meltano_project.run(
        "tap-spreadsheets", "target-carecycle", "tap-jsonl", "target-carecycle", env=target_env
    )
    crm, crm_rejected = expected_crm()
    web, web_rejected = expected_web()
    stored = by_external_id(sandbox.customers())
    assert sorted(stored) == sorted([*crm, *web]), result.tail()

    for lead_id, expected in crm.items():
        customer = stored[lead_id]
        for name in ("phoneNumber", "postalCode", "dateOfBirth", "city", "state"):
            assert customer.get(name) == expected[name], (lead_id, name, customer)
        if expected["postalCode"] is None:
            assert customer.get("timezone"), (lead_id, customer)
        assert customer["firstName"].lower() == expected["firstName"].lower(), lead_id
        assert customer["lastName"].lower() == expected["lastName"].lower(), lead_id
        assert customer.get("gender") in GENDERS | {None}
        assert customer.get("maritalStatus") in MARITAL | {None}
        assert customer.get("sourceId") == "sandbox-source"

    for lead_id, expected in web.items():
        customer = stored[lead_id]
        for name in ("phoneNumber", "postalCode", "dateOfBirth", "firstName", "email"):
            assert customer.get(name) == expected[name], (lead_id, name, customer)
        assert customer["householdIncome"] == expected["householdIncome"]
        assert customer["hasMedicaid"] is expected["hasMedicaid"]
        assert custom_fields(customer) == expected["customFields"]
        assert customer["gender"] in GENDERS

    stats = sandbox.stats()
    assert set(stats["requests"]) == {"200"}, stats["requests"]
    assert max(stats["batch_sizes"]) == 200
    assert stats["failed"] == 0
    summary = result.plugin_lines("target-carecycle")
    crm_counts = stream_counts(summary, "crm_leads")
    web_counts = stream_counts(summary, "web_forms")
    assert crm_counts["received"] == 400
    assert crm_counts["rejected"] == crm_rejected
    # A repeated row identical to one already acknowledged in this run is `unchanged`.
    assert (
        crm_counts["succeeded"] + crm_counts["merged"] + crm_counts["unchanged"]
        == 400 - crm_rejected
    ), summary
    assert (web_counts["received"], web_counts["rejected"]) == (100, web_rejected)
    assert web_counts["succeeded"] == len(web)
