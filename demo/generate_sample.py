"""Generate the bundled demo sample: messy, realistic-looking (but fake) health-insurance leads.

Writes two files next to this script, deterministically (fixed seed, no clock):

* ``data/crm_leads.csv``: 400 rows exported from an imaginary CRM, with CRM-style column names
  (``First Name``, ``Phone``, ``Zip Code``, ``DOB``, ...), mixed phone and date formats, ZIP+4
  codes, ZIPs that lost their leading zero in a spreadsheet, some rows that careCycle must never
  receive (no phone, 555-01xx numbers, neither ZIP nor timezone) and a few duplicated rows.
* ``data/web_forms.jsonl``: 100 web-form submissions with nested objects
  (``contact.phone``, ``address.zip``, ``profile.dob``, ``utm_source``...) that need a
  ``streams`` mapping (see ``meltano.yml``).

Phone numbers use real area codes and ordinary exchanges so that libphonenumber deems them valid
(they must pass the target's checks), which means some of them may belong to somebody: this data
is only ever sent to the local sandbox (``carecycle-sandbox``), never to careCycle.

Run ``python demo/generate_sample.py`` to regenerate; the output is committed and must not change
unless this script does (``python demo/generate_sample.py --check`` verifies that).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import sys
from pathlib import Path

SEED = 20240611
CSV_ROWS = 400
JSONL_ROWS = 100
HERE = Path(__file__).resolve().parent
CSV_PATH = HERE / "data" / "crm_leads.csv"
JSONL_PATH = HERE / "data" / "web_forms.jsonl"

# city, state, ZIP, area code, IANA timezone
PLACES = [
    ("Chicago", "IL", "60614", "312", "America/Chicago"),
    ("Evanston", "IL", "60201", "847", "America/Chicago"),
    ("Boston", "MA", "02134", "617", "America/New_York"),
    ("Worcester", "MA", "01608", "508", "America/New_York"),
    ("Newark", "NJ", "07102", "973", "America/New_York"),
    ("Hoboken", "NJ", "07030", "201", "America/New_York"),
    ("Hartford", "CT", "06103", "860", "America/New_York"),
    ("Providence", "RI", "02903", "401", "America/New_York"),
    ("Portland", "ME", "04101", "207", "America/New_York"),
    ("Burlington", "VT", "05401", "802", "America/New_York"),
    ("Manchester", "NH", "03101", "603", "America/New_York"),
    ("Houston", "TX", "77002", "713", "America/Chicago"),
    ("Dallas", "TX", "75201", "214", "America/Chicago"),
    ("San Antonio", "TX", "78205", "210", "America/Chicago"),
    ("El Paso", "TX", "79901", "915", "America/Denver"),
    ("Phoenix", "AZ", "85004", "602", "America/Phoenix"),
    ("Tucson", "AZ", "85701", "520", "America/Phoenix"),
    ("Los Angeles", "CA", "90012", "213", "America/Los_Angeles"),
    ("Sacramento", "CA", "95814", "916", "America/Los_Angeles"),
    ("San Diego", "CA", "92101", "619", "America/Los_Angeles"),
    ("Miami", "FL", "33130", "305", "America/New_York"),
    ("Tampa", "FL", "33602", "813", "America/New_York"),
    ("Orlando", "FL", "32801", "407", "America/New_York"),
    ("Atlanta", "GA", "30303", "404", "America/New_York"),
    ("Denver", "CO", "80202", "303", "America/Denver"),
    ("Seattle", "WA", "98101", "206", "America/Los_Angeles"),
    ("Portland", "OR", "97204", "503", "America/Los_Angeles"),
    ("Nashville", "TN", "37203", "615", "America/Chicago"),
    ("Columbus", "OH", "43215", "614", "America/New_York"),
    ("Charlotte", "NC", "28202", "704", "America/New_York"),
    ("Detroit", "MI", "48226", "313", "America/Detroit"),
    ("Minneapolis", "MN", "55401", "612", "America/Chicago"),
    ("St. Louis", "MO", "63101", "314", "America/Chicago"),
    ("Kansas City", "MO", "64105", "816", "America/Chicago"),
    ("Albuquerque", "NM", "87102", "505", "America/Denver"),
    ("Salt Lake City", "UT", "84101", "801", "America/Denver"),
    ("Las Vegas", "NV", "89101", "702", "America/Los_Angeles"),
    ("New Orleans", "LA", "70112", "504", "America/Chicago"),
    ("Pittsburgh", "PA", "15222", "412", "America/New_York"),
    ("Philadelphia", "PA", "19103", "215", "America/New_York"),
    ("Baltimore", "MD", "21202", "410", "America/New_York"),
    ("Indianapolis", "IN", "46204", "317", "America/Indiana/Indianapolis"),
    ("Louisville", "KY", "40202", "502", "America/Kentucky/Louisville"),
    ("Birmingham", "AL", "35203", "205", "America/Chicago"),
    ("Jackson", "MS", "39201", "601", "America/Chicago"),
    ("Little Rock", "AR", "72201", "501", "America/Chicago"),
    ("Oklahoma City", "OK", "73102", "405", "America/Chicago"),
    ("Omaha", "NE", "68102", "402", "America/Chicago"),
    ("Boise", "ID", "83702", "208", "America/Boise"),
]

FIRST_F = [
    "Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Barbara", "Susan", "Jessica",
    "Sarah", "Karen", "Lisa", "Nancy", "Betty", "Sandra", "Margaret", "Ashley", "Kimberly",
    "Emily", "Donna", "Michelle", "Carol", "Amanda", "Melissa", "Deborah", "Stephanie",
    "Rosa", "Guadalupe", "Mei", "Aaliyah", "Chloé", "Zoë", "Renée",
]  # fmt: skip
FIRST_M = [
    "James", "Robert", "John", "Michael", "David", "William", "Richard", "Joseph", "Thomas",
    "Charles", "Christopher", "Daniel", "Matthew", "Anthony", "Mark", "Donald", "Steven",
    "Paul", "Andrew", "Joshua", "Kenneth", "Kevin", "Brian", "George", "Jose", "Luis",
    "Juan", "Wei", "DeShawn", "Tyrone", "José",
]  # fmt: skip
LAST = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
    "Rodriguez", "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas",
    "Taylor", "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris",
    "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "O'Brien", "McDonald", "Nguyen",
    "Van der Berg", "St. James", "Kowalski", "Nuñez", "Washington", "Okafor", "Patel",
]  # fmt: skip
STREETS = [
    "Main St", "Oak Ave", "Maple Dr", "Cedar Ln", "Elm St", "Washington Blvd", "Park Ave",
    "Lakeview Rd", "Hillcrest Dr", "Pine St", "2nd Ave", "MLK Jr Blvd", "Sunset Blvd",
    "Church St", "Highland Ave", "River Rd",
]  # fmt: skip
EMAIL_DOMAINS = ["example.com", "example.net", "example.org", "mail.example.com"]
SEX_F = ["F", "Female", "female", "FEMALE", "f", "Woman"]
SEX_M = ["M", "Male", "male", "MALE", "m", "Man"]
SEX_OTHER = ["", "", "Non-binary", "Prefer not to say", "Other", "U"]
MARITAL = [
    "Married", "married", "Single", "single", "SINGLE", "Divorced", "divorced", "Widowed",
    "Separated", "Domestic Partner", "", "", "", "M", "S",
]  # fmt: skip
YES_NO = ["Yes", "No", "Y", "N", "yes", "no", "TRUE", "FALSE", "", "", ""]
TZ_ABBREVIATIONS = {
    "America/New_York": "EST",
    "America/Detroit": "EST",
    "America/Indiana/Indianapolis": "EST",
    "America/Kentucky/Louisville": "EST",
    "America/Chicago": "CST",
    "America/Denver": "MST",
    "America/Boise": "MST",
    "America/Phoenix": "MST",
    "America/Los_Angeles": "PST",
}
UTM_SOURCES = ["google", "facebook", "bing", "tiktok", "newsletter", "partner-medicompare"]
UTM_CAMPAIGNS = ["aep-2025", "oep-2025", "sep-turning65", "aca-subsidy", "retarget-q3"]
PLANS = ["Medicare Advantage", "Medicare Supplement", "ACA Marketplace", "Dental & Vision"]

CSV_COLUMNS = [
    "Lead ID",
    "First Name",
    "Last Name",
    "Phone",
    "Email Address",
    "Address",
    "City",
    "State",
    "Zip Code",
    "Timezone",
    "DOB",
    "Sex",
    "Marital Status",
    "Household Income",
    "Medicaid",
    "Veteran",
    "Lead Source",
    "Created Date",
]


def phone_digits(rng: random.Random, area_code: str) -> str:
    """Return a 10-digit NANP number with an ordinary exchange (no N11, 555, 950/958/959/976)."""
    while True:
        exchange = rng.randint(201, 989)
        if exchange % 100 == 11 or exchange in (555, 950, 958, 959, 976):
            continue
        return f"{area_code}{exchange}{rng.randint(0, 9999):04d}"


def format_phone(rng: random.Random, digits: str) -> str:
    """Write a 10-digit number the way people and CRMs do, in one of many styles."""
    a, b, c = digits[:3], digits[3:6], digits[6:]
    styles = [
        f"({a}) {b}-{c}",
        f"{a}.{b}.{c}",
        f"+1 {a} {b} {c}",
        digits,
        f"{a}-{b}-{c}",
        f"1-{a}-{b}-{c}",
        f"+1{digits}",
        f"1{digits}",
        f"({a}){b}-{c}",
        f" {a} {b} {c} ",
    ]
    weights = [25, 15, 10, 20, 15, 4, 4, 3, 2, 2]
    return rng.choices(styles, weights)[0]


def birth_date(rng: random.Random) -> tuple[int, int, int]:
    """Return year, month, day: mostly people near Medicare age, some ACA-age adults."""
    year = rng.randint(1948, 1962) if rng.random() < 0.6 else rng.randint(1965, 2004)
    month = rng.randint(1, 12)
    day = rng.randint(1, 28)
    return year, month, day


def format_date(rng: random.Random, ymd: tuple[int, int, int]) -> str:
    """Format a date as ISO, M/D/YYYY or MM-DD-YYYY."""
    y, m, d = ymd
    style = rng.choices(["iso", "us_slash", "us_dash"], [35, 45, 20])[0]
    if style == "iso":
        return f"{y:04d}-{m:02d}-{d:02d}"
    if style == "us_slash":
        return f"{m}/{d}/{y}"
    return f"{m:02d}-{d:02d}-{y}"


def messy_name(rng: random.Random, name: str) -> str:
    """Mess a name up: some are upper-cased, lower-cased or padded with spaces."""
    roll = rng.random()
    if roll < 0.08:
        return name.upper()
    if roll < 0.14:
        return name.lower()
    if roll < 0.18:
        return f" {name}  "
    return name


def email_for(rng: random.Random, first: str, last: str) -> str:
    """Return first.last@example.* in a few styles (domains reserved for examples)."""
    base_first = first.lower().encode("ascii", "ignore").decode()
    base_last = "".join(ch for ch in last.lower() if ch.isalpha()).encode("ascii", "ignore")
    last_s = base_last.decode()
    style = rng.randint(0, 3)
    local = [
        f"{base_first}.{last_s}",
        f"{base_first[0]}{last_s}",
        f"{base_first}{rng.randint(1, 99)}",
        f"{last_s}.{base_first}{rng.randint(50, 99)}",
    ][style]
    address = f"{local}@{rng.choice(EMAIL_DOMAINS)}"
    return address.upper() if rng.random() < 0.05 else address


def zip_as_exported(rng: random.Random, zip5: str) -> str:
    """Write a ZIP as CRM exports do: ZIP+4 sometimes, leading zeros lost after Excel."""
    if zip5.startswith("0") and rng.random() < 0.6:
        return zip5.lstrip("0")
    if rng.random() < 0.15:
        return f"{zip5}-{rng.randint(1000, 9999)}"
    return zip5


def make_person(rng: random.Random) -> dict[str, object]:
    """Make up a coherent fake person: name, sex, place, phone, birth date."""
    sex = rng.choices(["F", "M", "X"], [52, 45, 3])[0]
    first = rng.choice(FIRST_F if sex == "F" else FIRST_M if sex == "M" else FIRST_F + FIRST_M)
    last = rng.choice(LAST)
    place = rng.choice(PLACES)
    # Most people keep the number of the place they live in; some moved.
    area_code = place[3] if rng.random() < 0.85 else rng.choice(PLACES)[3]
    return {
        "sex": sex,
        "first": first,
        "last": last,
        "place": place,
        "phone": phone_digits(rng, area_code),
        "dob": birth_date(rng),
        "street": f"{rng.randint(10, 9899)} {rng.choice(STREETS)}",
        "apt": rng.choice(["", "", "", "", f"Apt {rng.randint(1, 40)}", f"#{rng.randint(1, 99)}"]),
    }


def sex_label(rng: random.Random, sex: object) -> str:
    """Return free-text sex/gender as CRMs hold it."""
    if sex == "F":
        return rng.choice(SEX_F)
    if sex == "M":
        return rng.choice(SEX_M)
    return rng.choice(SEX_OTHER)


def csv_rows(rng: random.Random) -> list[dict[str, str]]:
    """Build the CRM export, including rows that must be rejected and a few duplicates."""
    rows: list[dict[str, str]] = []
    for i in range(CSV_ROWS - 8):
        person = make_person(rng)
        city, state, zip5, _area, tz = person["place"]  # type: ignore[misc]
        phone = format_phone(rng, str(person["phone"]))
        zip_code = zip_as_exported(rng, zip5)
        timezone = ""
        problem = rng.random()
        if problem < 0.04:
            phone = rng.choice(["", "", "N/A", "none"])  # no phone: rejected
        elif problem < 0.065:
            digits = f"{person['phone']}"[:3] + f"55501{rng.randint(0, 99):02d}"
            phone = format_phone(rng, digits)  # 555-01xx, fictional: rejected
        elif problem < 0.085:
            zip_code = ""  # neither ZIP nor timezone: rejected
        elif problem < 0.135:
            zip_code = ""  # no ZIP but a timezone: accepted
            timezone = rng.choice([tz, TZ_ABBREVIATIONS[tz]])
        first = messy_name(rng, str(person["first"]))
        last = messy_name(rng, str(person["last"]))
        thousands = rng.randint(18, 160)
        income = rng.choice(["", "", f"{thousands * 1000}", f"${thousands},000"])
        rows.append(
            {
                "Lead ID": f"CRM-{100000 + i * 7}",
                "First Name": first,
                "Last Name": last,
                "Phone": phone,
                "Email Address": email_for(rng, str(person["first"]), str(person["last"]))
                if rng.random() < 0.85
                else "",
                "Address": f"{person['street']} {person['apt']}".strip(),
                "City": city,
                "State": state,
                "Zip Code": zip_code,
                "Timezone": timezone,
                "DOB": format_date(rng, person["dob"]) if rng.random() < 0.9 else "",  # type: ignore[arg-type]
                "Sex": sex_label(rng, person["sex"]),
                "Marital Status": rng.choice(MARITAL),
                "Household Income": income,
                "Medicaid": rng.choice(YES_NO),
                "Veteran": rng.choice(YES_NO),
                "Lead Source": rng.choice(["Website", "Referral", "Call-in", "Facebook Ad", ""]),
                "Created Date": f"2024-{rng.randint(1, 5):02d}-{rng.randint(1, 28):02d}",
            }
        )
    # Duplicates: the same lead exported twice (same Lead ID), sometimes with its phone written
    # differently; they are placed later in the file, like a second export appended.
    for src_index in rng.sample(range(len(rows)), 8):
        dup = dict(rows[src_index])
        if dup["Phone"] and rng.random() < 0.5:
            digits = "".join(ch for ch in dup["Phone"] if ch.isdigit())[-10:]
            if len(digits) == 10:
                dup["Phone"] = format_phone(rng, digits)
        rows.insert(rng.randint(src_index + 1, len(rows)), dup)
    return rows


def jsonl_rows(rng: random.Random) -> list[dict[str, object]]:
    """Build web-form submissions: nested objects, numbers as numbers, ISO timestamps."""
    out: list[dict[str, object]] = []
    for i in range(JSONL_ROWS):
        person = make_person(rng)
        city, state, zip5, _area, _tz = person["place"]  # type: ignore[misc]
        y, m, d = person["dob"]  # type: ignore[misc]
        phone = format_phone(rng, str(person["phone"]))
        zip_code: str | None = zip5 if rng.random() < 0.85 else f"{zip5}-{rng.randint(1000, 9999)}"
        if i % 25 == 7:
            phone = ""  # a form submitted without a phone: rejected
        if i % 33 == 20:
            zip_code = None  # no ZIP and no timezone on web forms: rejected
        submitted = f"2024-06-{1 + i % 28:02d}T{8 + i % 12:02d}:{(i * 7) % 60:02d}:00Z"
        out.append(
            {
                "lead_id": f"WF-{20240600 + i}",
                "submitted_at": submitted,
                "contact": {
                    "first": str(person["first"]),
                    "last": str(person["last"]),
                    "phone": phone,
                    "email": email_for(rng, str(person["first"]), str(person["last"])),
                },
                "address": {
                    "line1": str(person["street"]),
                    "line2": str(person["apt"]) or None,
                    "city": city,
                    "state": state,
                    "zip": zip_code,
                },
                "profile": {
                    "dob": f"{y:04d}-{m:02d}-{d:02d}",
                    "gender": {"F": "female", "M": "male"}.get(str(person["sex"]), "other"),
                    "household_size": rng.randint(1, 6),
                    "annual_income": rng.randint(15, 180) * 1000,
                    "on_medicaid": rng.random() < 0.15,
                },
                "interest": rng.choice(PLANS),
                "utm_source": rng.choice(UTM_SOURCES),
                "utm_campaign": rng.choice(UTM_CAMPAIGNS),
                "consent": {"tcpa": True, "text": "I agree to be contacted by phone and SMS."},
            }
        )
    return out


def render() -> tuple[str, str]:
    """Return both files' contents, as text."""
    rng = random.Random(SEED)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(rng))
    jsonl = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in jsonl_rows(rng))
    return buf.getvalue(), jsonl


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, compare) the sample files."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args(argv)
    csv_text, jsonl_text = render()
    if args.check:
        stale = [
            str(path.relative_to(HERE.parent))
            for path, text in ((CSV_PATH, csv_text), (JSONL_PATH, jsonl_text))
            if not path.exists() or path.read_text(encoding="utf-8") != text
        ]
        if stale:
            print("stale sample files: " + ", ".join(stale), file=sys.stderr)
            return 1
        return 0
    CSV_PATH.parent.mkdir(parents=True, exist_ok=True)
    CSV_PATH.write_text(csv_text, encoding="utf-8")
    JSONL_PATH.write_text(jsonl_text, encoding="utf-8")
    print(f"wrote {CSV_PATH.name} ({csv_text.count(chr(10)) - 1} rows)")
    print(f"wrote {JSONL_PATH.name} ({jsonl_text.count(chr(10))} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
