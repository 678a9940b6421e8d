#!/usr/bin/env python3
"""Compare `opsd schedule next` with croniter on generated expressions.

For every expression and every zone, fire times are asked for from two
instants chosen so that the fires cross that zone's daylight-saving
transitions (a random spring-forward and fall-back transition; random
instants for zones without DST). croniter's sequence gets opsd's one rule
on top: for an expression whose hour field has no `*`, the second pass over
a wall-clock time repeated by a fall-back transition does not fire.

Expressions avoid the spots where opsd deliberately differs from croniter
(listed in the README): equal ranges like `5-5` (croniter: the whole
cycle), backwards ranges like `fri-mon`, `W` with a restricted
day-of-week, and `#`/last-weekday with a restricted day-of-month (croniter
then drops the other field instead of ORing it).

Exit status 0 when every fire time matches; otherwise the mismatches are
printed, with a command to reproduce each.
"""

import argparse
import json
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from croniter import croniter

ZONES = ["America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kolkata", "Pacific/Chatham"]
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]

# Classic expressions an operator writes, checked besides the random ones.
CLASSICS = [
    "* * * * *", "*/5 * * * *", "0 * * * *", "30 * * * *", "15,45 * * * *",
    "0 0 * * *", "30 1 * * *", "30 2 * * *", "0 3 * * *", "45 2 * * *", "15 2 * * *",
    "0 2 * * sun", "0 2 * * 0", "0 2 * * 7", "0 */2 * * *", "0 1-3 * * *", "*/20 1 * * *",
    "0 9-17 * * mon-fri", "0 0 1 * *", "0 0 L * *", "0 0 15W * *", "0 0 * * 5#3", "0 0 * * L5",
    "0 0 1 * mon", "0 4 1,15 * *", "0 0 1 1 *", "@hourly", "@daily", "@midnight", "@weekly",
    "@monthly", "@yearly", "@annually", "30 0 * * *", "0 2 1-7 * sun", "59 23 * * *",
    "0 22 * * 1-5", "*/15 2-3 * * *", "0,30 2 * * *", "0 0 29 2 *",
    "0 30 2 * * *", "*/30 * 2 * * *", "15 45 1 * * *",
]


def pick(rng, lo, hi, weights=None):
    if weights:
        return rng.choices(range(lo, hi + 1), weights=weights)[0]
    return rng.randint(lo, hi)


def numeric_field(rng, lo, hi, hot=None):
    """A random field over lo..hi; `hot` values (near DST transitions) are favoured."""
    def val():
        if hot and rng.random() < 0.6:
            return rng.choice(hot)
        return rng.randint(lo, hi)

    shape = rng.random()
    if shape < 0.2:
        return "*"
    if shape < 0.35:
        return f"*/{rng.randint(2, max(2, (hi - lo) // 2))}"
    if shape < 0.6:
        return str(val())
    if shape < 0.75:
        return ",".join(str(v) for v in sorted({val() for _ in range(rng.randint(2, 4))}))
    a = val()
    b = rng.randint(a + 1, hi) if a < hi else None
    if b is None:
        return str(a)
    if shape < 0.9:
        return f"{a}-{b}"
    return f"{a}-{b}/{rng.randint(2, max(2, b - a))}"


def dom_field(rng):
    r = rng.random()
    if r < 0.55:
        return "*"
    if r < 0.62:
        return "L"
    if r < 0.68:
        return f"{rng.randint(1, 28)}W"
    return numeric_field(rng, 1, 31, hot=[1, 7, 8, 14, 15, 28, 29, 30, 31])


def month_field(rng):
    r = rng.random()
    if r < 0.5:
        return "*"
    if r < 0.65:
        return rng.choice(MONTHS[2:4] + MONTHS[8:11])
    if r < 0.75:
        a = rng.randint(0, 10)
        return f"{MONTHS[a]}-{MONTHS[rng.randint(a + 1, 11)]}"
    return numeric_field(rng, 1, 12, hot=[3, 4, 9, 10, 11])


def dow_field(rng, dom):
    r = rng.random()
    if r < 0.5:
        return "*"
    if dom == "*" and r < 0.58:
        return f"{rng.randint(0, 6)}#{rng.randint(1, 4)}"
    if dom == "*" and r < 0.63:
        return f"L{rng.randint(0, 6)}"
    if r < 0.75:
        return rng.choice(DAYS)
    if r < 0.85:
        a = rng.randint(0, 5)
        return f"{DAYS[a]}-{DAYS[rng.randint(a + 1, 6)]}"
    return numeric_field(rng, 0, 6, hot=[0, 6])


def gen_expr(rng):
    minute = numeric_field(rng, 0, 59, hot=[0, 15, 30, 45, 59])
    hour = numeric_field(rng, 0, 23, hot=[0, 1, 2, 3, 4])
    dom = dom_field(rng)
    dow = dow_field(rng, dom)
    if dom.endswith("W") and dow != "*":
        dow = "*"
    month = month_field(rng)
    fields = [minute, hour, dom, month, dow]
    if rng.random() < 0.1:
        fields.insert(0, rng.choice(["0", "30", "*/15", "0,30"]))
    return " ".join(fields)


def hour_field(expr):
    nick = {"@hourly": "*", "@daily": "0", "@midnight": "0", "@weekly": "0",
            "@monthly": "0", "@yearly": "0", "@annually": "0"}
    if expr.startswith("@"):
        return nick[expr]
    f = expr.split()
    return f[2] if len(f) == 6 else f[1]


def is_second_occurrence(t, tz):
    wall = t.astimezone(tz).replace(tzinfo=None)
    first = wall.replace(tzinfo=tz, fold=0)
    second = wall.replace(tzinfo=tz, fold=1)
    if first.utcoffset() == second.utcoffset():
        return False
    later = max(first.astimezone(timezone.utc), second.astimezone(timezone.utc))
    return t.astimezone(timezone.utc) == later


def expected(expr, zone, after, count):
    tz = ZoneInfo(zone)
    six = not expr.startswith("@") and len(expr.split()) == 6
    it = croniter(expr, after.astimezone(tz), second_at_beginning=six)
    fixed = "*" not in hour_field(expr)
    out = []
    while len(out) < count:
        t = it.get_next(datetime)
        if fixed and is_second_occurrence(t, tz):
            continue
        out.append(t.isoformat())
    return out


def raw_croniter(expr, zone, after, count):
    tz = ZoneInfo(zone)
    six = not expr.startswith("@") and len(expr.split()) == 6
    it = croniter(expr, after.astimezone(tz), second_at_beginning=six)
    return [it.get_next(datetime).isoformat() for _ in range(count)]


def transitions(zone, year):
    """Instants in `year` where the zone's UTC offset changes."""
    tz = ZoneInfo(zone)
    out = []
    t = datetime(year, 1, 1, tzinfo=timezone.utc)
    end = datetime(year + 1, 1, 1, tzinfo=timezone.utc)
    prev = t.astimezone(tz).utcoffset()
    while t < end:
        n = t + timedelta(hours=1)
        off = n.astimezone(tz).utcoffset()
        if off != prev:
            lo, hi = t, n
            while hi - lo > timedelta(minutes=1):
                mid = lo + (hi - lo) / 2
                if mid.astimezone(tz).utcoffset() == prev:
                    lo = mid
                else:
                    hi = mid
            out.append(hi)
            prev = off
        t = n
    return out


def span(expr, count):
    """How long `count` fires of the expression take, roughly."""
    six = not expr.startswith("@") and len(expr.split()) == 6
    it = croniter(expr, datetime(2026, 6, 1, tzinfo=timezone.utc), second_at_beginning=six)
    first = it.get_next(datetime)
    last = first
    for _ in range(count - 1):
        last = it.get_next(datetime)
    return max(last - first, timedelta(minutes=1))


def starts(rng, expr, zone, count):
    """Instants to ask from: shortly before DST transitions, so that the
    `count` fires cross them; random instants where the zone has none."""
    year = rng.choice([2025, 2026, 2027])
    trans = transitions(zone, year)
    width = span(expr, count)
    if not trans:
        base = datetime(year, 1, 1, tzinfo=timezone.utc)
        return [base + timedelta(seconds=rng.randint(0, 365 * 86400)) for _ in range(2)]
    out = []
    for tr in trans[:2]:
        lead = timedelta(seconds=rng.randint(0, int(width.total_seconds() * 0.8)))
        out.append((tr - lead).replace(microsecond=0))
    return out


def opsd_next(opsd, expr, zone, after, count):
    proc = subprocess.run(
        [opsd, "schedule", "next", expr, "--tz", zone, "--after", after.isoformat(),
         "--count", str(count), "--json"],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        return f"error: {proc.stderr.strip()}"
    return json.loads(proc.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--opsd", required=True)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--expressions", type=int, default=300, help="random expressions besides the classics")
    ap.add_argument("--count", type=int, default=20)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    exprs = list(CLASSICS)
    while len(exprs) < len(CLASSICS) + args.expressions:
        e = gen_expr(rng)
        try:
            expected(e, "UTC", datetime(2026, 1, 1, tzinfo=timezone.utc), 1)
        except Exception:
            continue  # never fires (say, 31 Feb); opsd refuses those at parse time
        if e not in exprs:
            exprs.append(e)

    cases = [(e, z, a) for e in exprs for z in ZONES for a in starts(rng, e, z, args.count)]

    def check(case):
        e, z, a = case
        want = expected(e, z, a, args.count)
        got = opsd_next(args.opsd, e, z, a, args.count)
        return case, want, got

    mismatches = []
    crossing = ruled = 0
    with ThreadPoolExecutor(max_workers=4) as pool:
        for (e, z, a), want, got in pool.map(check, cases):
            if want != got:
                mismatches.append((e, z, a, want, got))
            if len({w[-6:] for w in want}) > 1:
                crossing += 1
            if "*" not in hour_field(e) and want != raw_croniter(e, z, a, args.count):
                ruled += 1

    fires = len(cases) * args.count
    print(f"{len(exprs)} expressions x {len(ZONES)} zones, {len(cases)} start instants, "
          f"{fires} fire times compared; {len(mismatches)} mismatches")
    print(f"{crossing} sequences cross a UTC-offset change; in {ruled} the fixed-hour rule "
          f"changed croniter's sequence")
    for e, z, a, want, got in mismatches[:20]:
        print(f"\nMISMATCH {e!r} in {z} after {a.isoformat()}")
        print(f"  reproduce: opsd schedule next '{e}' --tz {z} --after {a.isoformat()} --count {args.count} --json")
        if isinstance(got, str):
            print(f"  opsd: {got}")
            continue
        for i, (w, g) in enumerate(zip(want, got)):
            if w != g:
                print(f"  first difference at fire {i + 1}: croniter {w}, opsd {g}")
                break
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
