#!/usr/bin/env bash
# Calendar plugin benchmark on a release build with the embedded defaults (SQLite,
# the bundled calendar plugin): end-to-end latency of POST /p/calendar/add-link
# through the real server over loopback, one request at a time (so the figure is a
# request's own time, not a queue's), with an API token:
#   - a typical single-event .ics (a Google Calendar export: VTIMEZONE, a weekly
#     series, attendees, an alarm, a description), submitted again (the event
#     already has its link: parse, one kv read, one link lookup, write) and with a
#     new UID each time (a new link: one link insert and one kv write more);
#   - a 500-event calendar, submitted again, and with 500 new UIDs each time.
# Prints medians (and p90) of SINGLE, SINGLE_NEW, MANY and MANY_NEW requests.
# CALENDAR_WASM=path/to/confab_calendar.wasm measures that build of the plugin
# instead of the bundled one (installed as `calendar`, which replaces it).
# Needs: curl, python3.
set -euo pipefail
cd "$(dirname "$0")/../.."

SINGLE="${SINGLE:-2000}"
SINGLE_NEW="${SINGLE_NEW:-500}"
MANY="${MANY:-30}"
MANY_NEW="${MANY_NEW:-10}"
PORT="${PORT:-18200}"

cargo build --release --quiet -p confab-core
bin="$PWD/target/release/confab"
work="$(mktemp -d)"
pid=""
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
export CONFAB_DATA_DIR="$work/data" CONFAB_SERVER_LISTEN="127.0.0.1:$PORT" CONFAB_LOG_LEVEL=warn
export CONFAB_MEDIA_BIND=127.0.0.1 CONFAB_MEDIA_UDP_PORT=0 CONFAB_MEDIA_TCP_PORT=0
base="http://127.0.0.1:$PORT"

if [ -n "${CALENDAR_WASM:-}" ]; then
  dir="$work/data/plugins/calendar"
  mkdir -p "$dir"
  sed 's/^component = .*/component = "plugin.wasm"/' plugins/calendar/plugin.toml >"$dir/plugin.toml"
  cp "$CALENDAR_WASM" "$dir/plugin.wasm"
  cp -r plugins/calendar/static plugins/calendar/templates "$dir/"
  printf '[plugins.settings.calendar]\ngrant = ["kv", "links", "templates", "users"]\n' >"$work/confab.toml"
  export CONFAB_CONFIG="$work/confab.toml"
fi
"$bin" serve >"$work/serve.log" 2>&1 &
pid=$!
until curl -sf "$base/readyz" >/dev/null; do
  kill -0 "$pid" 2>/dev/null || { cat "$work/serve.log"; exit 1; }
  sleep 0.01
done
echo "a good long password" | "$bin" user create --admin --email bench@example.org --name Bench --password-stdin >/dev/null
token=$("$bin" token create --user bench@example.org --name bench --json | sed -n 's/.*"token": "\(cf_[A-Za-z0-9]*\)".*/\1/p')

python3 - "$base" "$token" "$SINGLE" "$SINGLE_NEW" "$MANY" "$MANY_NEW" <<'PY'
import http.client, statistics, sys, time, urllib.parse

base, token = sys.argv[1], sys.argv[2]
single_n, single_new_n, many_n, many_new_n = map(int, sys.argv[3:7])
url = urllib.parse.urlparse(base)

TZ = """BEGIN:VTIMEZONE\r
TZID:Europe/Berlin\r
X-LIC-LOCATION:Europe/Berlin\r
BEGIN:DAYLIGHT\r
TZOFFSETFROM:+0100\r
TZOFFSETTO:+0200\r
TZNAME:CEST\r
DTSTART:19700329T020000\r
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r
END:DAYLIGHT\r
BEGIN:STANDARD\r
TZOFFSETFROM:+0200\r
TZOFFSETTO:+0100\r
TZNAME:CET\r
DTSTART:19701025T030000\r
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r
END:STANDARD\r
END:VTIMEZONE\r
"""

def event(uid, day):
    return f"""BEGIN:VEVENT\r
DTSTART;TZID=Europe/Berlin:202612{day:02d}T100000\r
DTEND;TZID=Europe/Berlin:202612{day:02d}T103000\r
RRULE:FREQ=WEEKLY;WKST=MO;UNTIL=20270330T075959Z;BYDAY=TU\r
DTSTAMP:20261120T091512Z\r
ORGANIZER;CN=Ana Lima:mailto:ana.lima@example.org\r
UID:{uid}\r
ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=ACCEPTED;CN=Ana Li\r
 ma;X-NUM-GUESTS=0:mailto:ana.lima@example.org\r
ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;CN=Zo\r
 ë Ōkubo;X-NUM-GUESTS=0:mailto:zoe@example.net\r
CREATED:20261119T080000Z\r
DESCRIPTION:Agenda: status\\, risks\\, next steps.\\nNotes in the shared doc.\r
LAST-MODIFIED:20261120T091512Z\r
LOCATION:Room 4.12\r
SEQUENCE:0\r
STATUS:CONFIRMED\r
SUMMARY:Weekly sync – Café {day}\r
TRANSP:OPAQUE\r
BEGIN:VALARM\r
ACTION:DISPLAY\r
DESCRIPTION:This is an event reminder\r
TRIGGER:-P0DT0H10M0S\r
END:VALARM\r
END:VEVENT\r
"""

def calendar(uids):
    head = "BEGIN:VCALENDAR\r\nPRODID:-//Google Inc//Google Calendar 70.9054//EN\r\nVERSION:2.0\r\nCALSCALE:GREGORIAN\r\nMETHOD:PUBLISH\r\n"
    body = "".join(event(uid, 1 + i % 28) for i, uid in enumerate(uids))
    return (head + TZ + body + "END:VCALENDAR\r\n").encode()

conn = http.client.HTTPConnection(url.hostname, url.port)
headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/calendar"}

def post(body):
    start = time.perf_counter()
    conn.request("POST", "/p/calendar/add-link", body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    elapsed = (time.perf_counter() - start) * 1000
    if response.status != 200:
        sys.exit(f"unexpected {response.status}: {data[:300]!r}")
    return elapsed

def report(name, samples):
    if not samples:
        return
    samples.sort()
    p90 = samples[int(len(samples) * 0.9) - 1] if len(samples) >= 10 else samples[-1]
    print(f"  {name:<44} median {statistics.median(samples):8.2f} ms, p90 {p90:8.2f} ms ({len(samples)} requests)")

single = calendar(["4q2k7d0v9hs1j3m5n8b6c4x2z0@google.com"])
many = calendar([f"bench-{i}@google.com" for i in range(500)])
print(f"single event: {len(single)} bytes; 500 events: {len(many) // 1024} KiB")
post(single); post(many)  # their links exist from now on
for _ in range(20): post(single)  # warm-up
results = {}
results["single event, submitted again"] = [post(single) for _ in range(single_n)]
results["single event, new UID (makes a link)"] = [post(calendar([f"new-{n}@google.com"])) for n in range(single_new_n)]
results["500 events, submitted again"] = [post(many) for _ in range(many_n)]
results["500 events, 500 new UIDs (makes 500 links)"] = [
    post(calendar([f"many-{n}-{i}@google.com" for i in range(500)])) for n in range(many_new_n)
]
print("POST /p/calendar/add-link, one at a time over loopback, end to end:")
for name, samples in results.items():
    report(name, samples)
PY
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
