"""`meltano run` with file taps (tap-spreadsheets on CSV, tap-jsonl) into the sandbox."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline_helpers import (
    MeltanoProject,
    by_external_id,
    custom_fields,
    stream_counts,
    write_csv,
    write_jsonl,
)

from target_carecycle.sandbox import RunningSandbox

CSV_HEADER = [
    "External ID",
    "First Name",
    "Last Name",
    "Phone",
    "Email Address",
    "Zip Code",
    "Timezone",
    "DOB",
    "Sex",
    "Marital Status",
    "Medicaid",
    "Favourite Colour",
]
CSV_ROWS = [
    # accepted
    ["A-1", " Jane ", "Doe", "(312) 847-1928", "jane.doe@example.com", "60614-1234", "",
     "1958-03-14", "F", "married", "yes", "teal"],
    ["A-2", "John", "Smith", "617.370.1625", "", "2134", "", "3/4/1950", "male", "Single",
     "no", ""],
    ["A-3", "Ana", "Lopez", "+1 713 224 5566", "ana@example.org", "77002", "", "07-04-1961",
     "Female", "divorced", "", ""],
    ["A-7", "Tess", "Only", "303 294 7781", "", "", "America/Denver", "", "", "", "", ""],
    # rejected: a 555-01xx number, no phone, neither ZIP nor timezone
    ["A-4", "Bob", "Ray", "2145550142", "", "75201", "", "", "M", "", "", ""],
    ["A-5", "No", "Phone", "", "", "75201", "", "", "", "", "", ""],
    ["A-6", "Nozip", "Notz", "2147483920", "", "", "", "", "", "", "", ""],
    # the first lead again, its phone written differently
    ["A-1", "Jane", "Doe", "312-847-1928", "jane.doe@example.com", "60614", "", "1958-03-14",
     "F", "married", "yes", "teal"],
]  # fmt: skip


def test_csv_zero_config(
    meltano_project: MeltanoProject,
    sandbox: RunningSandbox,
    target_env: dict[str, str],
    data_dir: Path,
) -> None:
    """CRM-style CSV columns map themselves: no `streams` config at all."""
    write_csv(data_dir / "leads.csv", CSV_HEADER, CSV_ROWS)
    result = meltano_project.run(
        "tap-csv-test",
        "target-carecycle",
        env={**target_env, "PIPELINE_DATA_DIR": str(data_dir), "TARGET_CARECYCLE_STREAMS": "{}"},
    )

    stored = by_external_id(sandbox.customers())
    assert sorted(stored) == ["A-1", "A-2", "A-3", "A-7"], result.tail()

    jane = stored["A-1"]
    assert jane["phoneNumber"] == "+13128471928"
    assert jane["firstName"] == "Jane"
    assert jane["lastName"] == "Doe"
    assert jane["email"] == "jane.doe@example.com"
    assert jane["postalCode"] == "60614"  # ZIP+4 cut to 5 digits
    assert jane["dateOfBirth"] == "03-14-1958"  # ISO -> MM-DD-YYYY
    assert jane["gender"] == "Female"  # F
    assert jane["maritalStatus"] == "Married"  # married
    assert jane["hasMedicaid"] is True  # yes
    assert jane.get("sourceId") in (None, "sandbox-source")

    john = stored["A-2"]
    assert john["phoneNumber"] == "+16173701625"  # 617.370.1625
    assert john["postalCode"] == "02134"  # the leading zero a spreadsheet dropped
    assert john["dateOfBirth"] == "03-04-1950"  # M/D/YYYY
    assert john["gender"] == "Male"
    assert john["maritalStatus"] == "Single"
    assert john["hasMedicaid"] is False
    assert not john.get("email")

    ana = stored["A-3"]
    assert ana["phoneNumber"] == "+17132245566"  # +1 713 224 5566
    assert ana["dateOfBirth"] == "07-04-1961"  # MM-DD-YYYY kept
    assert ana["maritalStatus"] == "Divorced"

    tess = stored["A-7"]
    assert tess["phoneNumber"] == "+13032947781"
    assert not tess.get("postalCode")
    assert tess["timezone"] == "America/Denver"

    for customer in stored.values():
        assert customer["status"] == "Lead"
        assert "Favourite Colour" not in customer and "favourite_colour" not in customer

    stats = sandbox.stats()
    assert stats["customers"] == 4
    assert stats["failed"] == 0
    assert stats["requests"] == {"200": stats["upload_requests"]}, stats
    assert max(stats["batch_sizes"]) <= 200

    summary = result.target_summary()
    assert summary, result.tail()
    counts = stream_counts(summary, "crm_csv")
    assert counts["received"] == 8
    assert counts["rejected"] == 3
    assert counts["failed"] == 0
    # The duplicate A-1 was either merged into the first or sent as an update.
    assert counts["succeeded"] + counts.get("merged", 0) == 5

    state = meltano_project.state("dev:tap-csv-test-to-target-carecycle")
    metrics = state["singer_state"]["target_carecycle"]["crm_csv"]
    assert metrics["received"] == 8
    assert metrics["rejected"] == 3
    assert "bookmarks" in state["singer_state"]


def web_lead(n: int, phone: str, zip_code: str | None, **extra: object) -> dict[str, Any]:
    return {
        "lead_id": f"W-{n}",
        "submitted_at": "2024-06-01T10:00:00Z",
        "contact": {
            "first": f"First{n}",
            "last": "Webb",
            "phone": phone,
            "email": f"w{n}@example.net",
        },
        "address": {"line1": f"{n} Main St", "city": "Austin", "state": "TX", "zip": zip_code},
        "profile": {"dob": "1961-12-31", "gender": "female", "income": 52000},
        "utm_source": "google",
        "utm_campaign": f"camp-{n}",
        **extra,
    }


WEB_STREAMS = {
    "web_leads": {
        "external_id": "lead_id",
        "fields": {
            "firstName": "contact.first",
            "lastName": "contact.last",
            "phoneNumber": "contact.phone",
            "email": "contact.email",
            "address": "address.line1",
            "city": "address.city",
            "state": "address.state",
            "postalCode": "address.zip",
            "dateOfBirth": "profile.dob",
            "gender": "profile.gender",
            "householdIncome": "profile.income",
        },
        "custom_fields": {"utm_source": "utm_source", "utm_campaign": "utm_campaign"},
    }
}


def test_jsonl_nested_with_mapping(
    meltano_project: MeltanoProject,
    sandbox: RunningSandbox,
    target_env: dict[str, str],
    data_dir: Path,
) -> None:
    """Nested JSONL needs a `streams` mapping: dotted paths for fields and custom fields."""
    write_jsonl(
        data_dir / "forms.jsonl",
        [
            web_lead(1, "(512) 231-8890", "78701"),
            web_lead(2, "512.231.8891", "78701-4410"),
            web_lead(3, "+1 404 527 3310", "30303"),
            web_lead(4, "", "78701"),  # no phone: rejected
            web_lead(5, "512-555-0100", "78701"),  # fictional number: rejected
        ],
    )
    result = meltano_project.run(
        "tap-jsonl-test",
        "target-carecycle",
        env={
            **target_env,
            "PIPELINE_DATA_DIR": str(data_dir),
            "TARGET_CARECYCLE_STREAMS": json.dumps(WEB_STREAMS),
        },
    )

    stored = by_external_id(sandbox.customers())
    assert sorted(stored) == ["W-1", "W-2", "W-3"], result.tail()
    first = stored["W-1"]
    assert first["phoneNumber"] == "+15122318890"
    assert first["firstName"] == "First1"
    assert first["lastName"] == "Webb"
    assert first["email"] == "w1@example.net"
    assert first["address"] == "1 Main St"
    assert first["city"] == "Austin"
    assert first["state"] == "TX"
    assert first["postalCode"] == "78701"
    assert first["dateOfBirth"] == "12-31-1961"
    assert first["gender"] == "Female"
    assert first["householdIncome"] == 52000
    assert custom_fields(first) == {"utm_source": "google", "utm_campaign": "camp-1"}
    assert stored["W-2"]["phoneNumber"] == "+15122318891"
    assert stored["W-2"]["postalCode"] == "78701"
    assert stored["W-3"]["phoneNumber"] == "+14045273310"

    summary = result.target_summary()
    counts = stream_counts(summary, "web_leads")
    assert (counts["received"], counts["succeeded"], counts["rejected"]) == (5, 3, 2)
