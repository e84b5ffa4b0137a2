#!/usr/bin/env python3
"""Reads a calendar the calendar plugin wrote with an independent parser (the
`icalendar` package from PyPI) and checks it against expectations.

    python3 check_ics.py OUTPUT.ics < expectations.json

Expectations (every key optional):

    {
      "input": "path of the file the output was made from",
      "links": {"UID": "link written into every VEVENT with that UID"},
      "kept_urls": {"UID": "the event's own URL, kept"},
      "label": "the link's label",
      "method": "PUBLISH",
      "prodid": "-//Confab//Calendar//EN",
      "feed": true,
      "events": [{"uid": "…", "summary": "…", "start_utc": "2026-12-01T09:00:00+00:00",
                  "end_utc": "…", "tzid": "Europe/Berlin", "rrule": {"FREQ": ["WEEKLY"]},
                  "sequence": 0, "status": "CONFIRMED", "organizer": "mailto:…",
                  "attendees": ["mailto:…"], "rsvp": true, "recurrence_id": null}]
    }

Always checked: CRLF line ends, lines of at most 75 octets that are UTF-8 each
(no character split by a fold), UID and DTSTAMP on every VEVENT, a VTIMEZONE for
every TZID used, VERSION and PRODID. Every VTIMEZONE named after an IANA zone must
give the same UTC offsets as the system's zone database over the years it covers.
With "input", every property of every component must be unchanged but for those
the link goes into, and the existing location and description must be kept.
Prints "ok" and exits 0, or prints what is wrong and exits 1.
"""

import json
import sys
from datetime import datetime, timedelta, timezone

try:
    import icalendar
except ImportError:
    print("the Python package icalendar is missing: pip install icalendar", file=sys.stderr)
    sys.exit(3)

try:
    from zoneinfo import ZoneInfo
except ImportError:  # pragma: no cover
    ZoneInfo = None

BLOCK_START = "==== Confab call ===="
BLOCK_END = "==== end of Confab call ===="
LINK_PROPERTY = "X-CONFAB-LINK"
# What adding a link may change in an event; everything else stays as it was.
CHANGED = {
    "LOCATION",
    "URL",
    "CONFERENCE",
    "DESCRIPTION",
    "X-ALT-DESC",
    "SEQUENCE",
    "LAST-MODIFIED",
    LINK_PROPERTY,
}

# How many years of a generated VTIMEZONE are compared with the zone database.
ZONE_YEARS = 12

problems = []


def fail(message):
    problems.append(message)


def text(value):
    return "" if value is None else str(value)


def as_list(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def check_lines(data):
    if not data.endswith(b"\r\n"):
        fail("the file does not end with CRLF")
    body = data[:-2] if data.endswith(b"\r\n") else data
    for number, line in enumerate(body.split(b"\r\n"), 1):
        if b"\n" in line or b"\r" in line:
            fail(f"line {number} has a bare CR or LF")
        if len(line) > 75:
            fail(f"line {number} has {len(line)} octets")
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            fail(f"line {number} is not UTF-8 on its own (a fold split a character)")


def signature(component):
    """The properties of a component, without sub-components, comparable."""
    out = {}
    for name, value in component.property_items(recursive=False, sorted=False):
        if name in ("BEGIN", "END"):
            continue
        params = {}
        if hasattr(value, "params"):
            params = {k.upper(): str(v) for k, v in value.params.items()}
        raw = value.to_ical() if hasattr(value, "to_ical") else str(value).encode()
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8")
        out.setdefault(name.upper(), []).append((raw, sorted(params.items())))
    return out


def compare_untouched(before, after, path, links):
    if before.name != after.name:
        fail(f"{path}: {before.name} became {after.name}")
        return
    a, b = signature(before), signature(after)
    linked = before.name == "VEVENT" and text(before.get("UID")) in links
    for name in sorted(set(a) | set(b)):
        if linked and name in CHANGED:
            continue
        if name in ("DTSTAMP", "UID") and name not in a and before.name == "VEVENT":
            continue
        if a.get(name) != b.get(name):
            fail(f"{path}: {name} changed from {a.get(name)} to {b.get(name)}")
    if linked:
        uid = text(before.get("UID"))
        location = text(before.get("LOCATION"))
        if location.strip() and not text(after.get("LOCATION")).startswith(location.strip()):
            fail(f"{path}: the location {location!r} was not kept")
        description = text(before.get("DESCRIPTION"))
        if BLOCK_START not in description and not text(after.get("DESCRIPTION")).startswith(description):
            fail(f"{path}: the description was not kept")
        old_sequence = int(before.get("SEQUENCE", 0))
        if int(after.get("SEQUENCE", 0)) != old_sequence + 1 and text(before.get(LINK_PROPERTY)) != links[uid]:
            fail(f"{path}: SEQUENCE {after.get('SEQUENCE')} is not {old_sequence + 1}")
        for kept in ("URL",):
            if kept in before and text(before.get(kept)) != text(after.get(kept)) and text(before.get(LINK_PROPERTY)) == "":
                fail(f"{path}: the event's own {kept} changed")
    subs_a, subs_b = before.subcomponents, after.subcomponents
    if len(subs_a) != len(subs_b):
        fail(f"{path}: {len(subs_a)} sub-components became {len(subs_b)}")
        return
    for i, (x, y) in enumerate(zip(subs_a, subs_b)):
        compare_untouched(x, y, f"{path}/{y.name}[{i}]", links)


def check_link(event, link, label, kept_url):
    uid = text(event.get("UID"))
    where = f"VEVENT {uid} {text(event.get('RECURRENCE-ID') and event.get('RECURRENCE-ID').to_ical().decode())}"
    if link not in text(event.get("LOCATION")):
        fail(f"{where}: LOCATION {text(event.get('LOCATION'))!r} lacks the link")
    url = event.get("URL")
    if kept_url is not None:
        if text(url) != kept_url:
            fail(f"{where}: URL {text(url)!r} is not the event's own {kept_url!r}")
    elif text(url) != link:
        fail(f"{where}: URL is {text(url)!r}, not the link")
    conferences = [c for c in as_list(event.get("CONFERENCE")) if text(c) == link]
    if len(conferences) != 1:
        fail(f"{where}: {len(conferences)} CONFERENCE lines with the link")
    for c in conferences:
        params = {k.upper(): str(v) for k, v in c.params.items()}
        if params.get("VALUE") != "URI" or "VIDEO" not in params.get("FEATURE", ""):
            fail(f"{where}: CONFERENCE parameters {params}")
        if label is not None and params.get("LABEL") != label:
            fail(f"{where}: CONFERENCE LABEL {params.get('LABEL')!r} is not {label!r}")
    description = text(event.get("DESCRIPTION"))
    if description.count(BLOCK_START) != 1 or description.count(BLOCK_END) != 1:
        fail(f"{where}: the description has {description.count(BLOCK_START)} join blocks")
    else:
        block = description[description.index(BLOCK_START):description.index(BLOCK_END)]
        if link not in block:
            fail(f"{where}: the join block does not have the link")
    html = text(event.get("X-ALT-DESC"))
    if html.count("<!-- confab-call -->") != 1 or link.replace("&", "&amp;") not in html:
        fail(f"{where}: X-ALT-DESC lacks the join block with the link")
    if text(event.get(LINK_PROPERTY)) != link:
        fail(f"{where}: {LINK_PROPERTY} is {text(event.get(LINK_PROPERTY))!r}")


def check_zone(vtimezone):
    name = text(vtimezone.get("TZID"))
    if ZoneInfo is None:
        return
    try:
        reference = ZoneInfo(name)
    except Exception:
        return  # a Windows name: nothing to compare with
    generated = vtimezone.to_tz(lookup_tzid=False)
    starts = [c.decoded("DTSTART") for c in vtimezone.subcomponents]
    first = min(starts)
    # From the first year the zone covers fully, for the years a series may run.
    t = datetime(first.year + 1, 1, 1, tzinfo=timezone.utc)
    end = datetime(first.year + 1 + ZONE_YEARS, 1, 1, tzinfo=timezone.utc)
    while t < end:
        ours = t.astimezone(generated).utcoffset()
        theirs = t.astimezone(reference).utcoffset()
        if ours != theirs:
            fail(f"VTIMEZONE {name}: at {t} it gives {ours}, the zone database {theirs}")
            return
        t += timedelta(hours=12)


def check_event(event, want):
    uid = want.get("uid")
    where = f"VEVENT {uid}"

    def utc(name):
        value = event.decoded(name)
        return value.astimezone(timezone.utc).isoformat()

    for key, name in (("start_utc", "DTSTART"), ("end_utc", "DTEND")):
        if key in want and utc(name) != want[key]:
            fail(f"{where}: {name} is {utc(name)}, not {want[key]}")
    if "tzid" in want:
        tzid = event["DTSTART"].params.get("TZID")
        if tzid != want["tzid"]:
            fail(f"{where}: DTSTART has TZID {tzid!r}, not {want['tzid']!r}")
    if "summary" in want and text(event.get("SUMMARY")) != want["summary"]:
        fail(f"{where}: SUMMARY {text(event.get('SUMMARY'))!r}")
    if "rrule" in want:
        rule = event.get("RRULE")
        got = {k: [str(x) for x in v] for k, v in rule.items()} if rule is not None else None
        expected = want["rrule"]
        if expected is None:
            if got is not None:
                fail(f"{where}: unexpected RRULE {got}")
        elif got is None:
            fail(f"{where}: no RRULE")
        else:
            for k, v in expected.items():
                if [x.upper() for x in got.get(k, [])] != [x.upper() for x in v]:
                    fail(f"{where}: RRULE {k} is {got.get(k)}, not {v}")
    if "sequence" in want and int(event.get("SEQUENCE", 0)) != want["sequence"]:
        fail(f"{where}: SEQUENCE {event.get('SEQUENCE')}, not {want['sequence']}")
    if "status" in want and text(event.get("STATUS")) != want["status"]:
        fail(f"{where}: STATUS {text(event.get('STATUS'))!r}, not {want['status']!r}")
    if "organizer" in want and text(event.get("ORGANIZER")) != want["organizer"]:
        fail(f"{where}: ORGANIZER {text(event.get('ORGANIZER'))!r}")
    if "attendees" in want:
        attendees = as_list(event.get("ATTENDEE"))
        got = [text(a) for a in attendees]
        if got != want["attendees"]:
            fail(f"{where}: attendees {got}, not {want['attendees']}")
        if want.get("rsvp"):
            for a in attendees:
                if str(a.params.get("RSVP", "")).upper() != "TRUE":
                    fail(f"{where}: attendee {a} has no RSVP=TRUE")


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    data = open(sys.argv[1], "rb").read()
    raw = sys.stdin.read() if len(sys.argv) < 3 else open(sys.argv[2]).read()
    want = json.loads(raw) if raw.strip() else {}

    check_lines(data)
    calendar = icalendar.Calendar.from_ical(data)
    if "VERSION" not in calendar or "PRODID" not in calendar:
        fail("VERSION or PRODID is missing")
    if "prodid" in want and text(calendar.get("PRODID")) != want["prodid"]:
        fail(f"PRODID is {text(calendar.get('PRODID'))!r}")
    if "method" in want and text(calendar.get("METHOD")) != want["method"]:
        fail(f"METHOD is {text(calendar.get('METHOD'))!r}, not {want['method']!r}")
    if want.get("feed") and "REFRESH-INTERVAL" not in calendar:
        fail("a feed without REFRESH-INTERVAL")

    events = calendar.walk("VEVENT")
    for event in events:
        for required in ("UID", "DTSTAMP"):
            if required not in event:
                fail(f"a VEVENT without {required}")
    zones = {text(z.get("TZID")) for z in calendar.walk("VTIMEZONE")}
    used = set()
    for component in calendar.walk():
        for name, value in component.property_items(recursive=False, sorted=False):
            params = getattr(value, "params", {}) or {}
            if "TZID" in params:
                used.add(str(params["TZID"]))
    for tzid in sorted(used - zones):
        fail(f"TZID {tzid!r} is used without a VTIMEZONE")
    # The VTIMEZONEs of foreign files are theirs; those the engine wrote must be right.
    if text(calendar.get("PRODID")) == "-//Confab//Calendar//EN":
        for vtimezone in calendar.walk("VTIMEZONE"):
            check_zone(vtimezone)

    links = want.get("links", {})
    kept = want.get("kept_urls", {})
    for event in events:
        uid = text(event.get("UID"))
        if uid in links:
            check_link(event, links[uid], want.get("label"), kept.get(uid))
    for uid in links:
        if not any(text(e.get("UID")) == uid for e in events):
            fail(f"no VEVENT with UID {uid}")

    if want.get("input"):
        before = icalendar.Calendar.from_ical(open(want["input"], "rb").read())
        compare_untouched(before, calendar, "VCALENDAR", links)

    for expected in want.get("events", []):
        matches = [
            e
            for e in events
            if text(e.get("UID")) == expected.get("uid")
            and (e.get("RECURRENCE-ID") is None) == (expected.get("recurrence_id") is None)
        ]
        if len(matches) != 1:
            fail(f"{len(matches)} VEVENTs match {expected.get('uid')}")
            continue
        check_event(matches[0], expected)

    if problems:
        for p in problems:
            print(p)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
