#!/usr/bin/env python3
"""Describes one received message as JSON, read by independent parsers.

    mime.py MESSAGE.eml

The message is parsed by Python's `email` package (policy=email.policy.default),
calendar parts by the `icalendar` package, links by `html.parser`. Printed:

  headers      From, To, Cc, Reply-To, Subject, Message-ID, Date (decoded text, or
               null when absent)
  addresses    from/to/cc/reply_to as lists of {name, addr}
  all_headers  every top-level header as [name, decoded value], in order
  tree         the MIME tree: {content_type, params, disposition, filename,
               transfer_encoding, content_id, children: [...]}; a leaf has
               `text` (text/*, decoded) or `size` (other types, decoded bytes)
  calendars    per text/calendar part: method, prodid and the VEVENTs with uid,
               sequence, status, summary, url, location, description, organizer
               {value, cn}, attendees [{value, rsvp, role, partstat, cn}],
               dtstart/dtend (ISO text), dtstart_tzid, rrule, recurrence_id
  hrefs        href of every <a> in the text/html parts, entity-unescaped
  defects      parse defects of the headers and of every part
"""

import email
import email.policy
import json
import sys
from html.parser import HTMLParser

HEADERS = ["From", "To", "Cc", "Reply-To", "Subject", "Message-ID", "Date"]
ADDRESS_HEADERS = {"from": "From", "to": "To", "cc": "Cc", "reply_to": "Reply-To"}


class Hrefs(HTMLParser):
    """Collects the href attribute of every <a> tag (values come unescaped)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.hrefs = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs.extend(v for k, v in attrs if k == "href" and v is not None)


def text_of(part):
    try:
        return part.get_content()
    except (LookupError, UnicodeError):
        return (part.get_payload(decode=True) or b"").decode("utf-8", "replace")


def describe(part, out):
    """The tree node of one part; fills out['calendars'] and out['hrefs'] on the way."""
    header = part.get("Content-Type")
    params = {k.lower(): v for k, v in header.params.items()} if header is not None else {}
    node = {
        "content_type": part.get_content_type(),
        "params": params,
        "disposition": part.get_content_disposition(),
        "filename": part.get_filename(),
        "transfer_encoding": part.get("Content-Transfer-Encoding"),
        "content_id": part.get("Content-ID"),
        "children": [],
    }
    out["defects"].extend(f"{node['content_type']}: {type(d).__name__}: {d}"
                          for d in part.defects)
    if part.is_multipart():
        node["children"] = [describe(child, out) for child in part.iter_parts()]
        return node
    if part.get_content_maintype() == "text":
        node["text"] = text_of(part)
        if node["content_type"] == "text/calendar":
            out["calendars"].append(calendar(part.get_payload(decode=True) or b""))
        elif node["content_type"] == "text/html":
            parser = Hrefs()
            parser.feed(node["text"])
            parser.close()
            out["hrefs"].extend(parser.hrefs)
    else:
        node["size"] = len(part.get_payload(decode=True) or b"")
    return node


def text_or_none(value):
    return None if value is None else str(value)


def iso(component, name):
    if name not in component:
        return None
    return component.decoded(name).isoformat()


def cal_address(value):
    params = value.params
    return {
        "value": str(value),
        "cn": text_or_none(params.get("CN")),
        "rsvp": text_or_none(params.get("RSVP")),
        "role": text_or_none(params.get("ROLE")),
        "partstat": text_or_none(params.get("PARTSTAT")),
    }


def calendar(raw):
    import icalendar  # only when there is a calendar: it is slow to import

    cal = icalendar.Calendar.from_ical(raw)
    events = []
    for ev in cal.walk("VEVENT"):
        attendees = ev.get("ATTENDEE", [])
        if not isinstance(attendees, list):
            attendees = [attendees]
        organizer = ev.get("ORGANIZER")
        rrule = ev.get("RRULE")
        sequence = ev.get("SEQUENCE")
        dtstart = ev.get("DTSTART")
        events.append({
            "uid": text_or_none(ev.get("UID")),
            "sequence": None if sequence is None else int(sequence),
            "status": text_or_none(ev.get("STATUS")),
            "summary": text_or_none(ev.get("SUMMARY")),
            "url": text_or_none(ev.get("URL")),
            "location": text_or_none(ev.get("LOCATION")),
            "description": text_or_none(ev.get("DESCRIPTION")),
            "organizer": None if organizer is None else {
                "value": str(organizer),
                "cn": text_or_none(organizer.params.get("CN")),
            },
            "attendees": [cal_address(a) for a in attendees],
            "dtstart": iso(ev, "DTSTART"),
            "dtstart_tzid": None if dtstart is None
            else text_or_none(dtstart.params.get("TZID")),
            "dtend": iso(ev, "DTEND"),
            "rrule": None if rrule is None else rrule.to_ical().decode(),
            "recurrence_id": iso(ev, "RECURRENCE-ID"),
        })
    return {
        "method": text_or_none(cal.get("METHOD")),
        "prodid": text_or_none(cal.get("PRODID")),
        "events": events,
    }


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: mime.py MESSAGE.eml")
    with open(sys.argv[1], "rb") as f:
        msg = email.message_from_binary_file(f, policy=email.policy.default)

    out = {"calendars": [], "hrefs": [], "defects": []}
    headers = {name: text_or_none(msg.get(name)) for name in HEADERS}
    addresses = {}
    for key, name in ADDRESS_HEADERS.items():
        value = msg.get(name)
        addresses[key] = [] if value is None else [
            {"name": a.display_name, "addr": a.addr_spec} for a in value.addresses]
    all_headers = []
    for name, value in msg.items():
        all_headers.append([name, str(value)])
        out["defects"].extend(f"header {name}: {type(d).__name__}: {d}"
                              for d in getattr(value, "defects", ()))
    tree = describe(msg, out)

    result = {
        "headers": headers,
        "addresses": addresses,
        "all_headers": all_headers,
        "tree": tree,
        "calendars": out["calendars"],
        "hrefs": out["hrefs"],
        "defects": out["defects"],
    }
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
