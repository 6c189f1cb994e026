"""The compose monitoring profile, checked: Prometheus reports every target up, then every
PromQL expression of the Grafana dashboard returns data. A panel over a metric that does not
exist fails the build.

    prometheus_check.py <prometheus base URL> <dashboard JSON> <targets expected>
"""
import json
import sys
import time
import urllib.parse
import urllib.request


def query(base, expr):
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        answer = json.load(r)
    if answer.get("status") != "success":
        raise RuntimeError(f"{expr}: {answer}")
    return answer["data"]["result"]


def expressions(panels):
    for p in panels:
        yield from expressions(p.get("panels", []))
        for t in p.get("targets", []):
            yield p["title"], t["expr"]


def main():
    base, dashboard, targets = sys.argv[1], sys.argv[2], int(sys.argv[3])
    deadline = time.time() + 180
    while True:
        try:
            up = query(base, "up")
            if len(up) == targets and all(s["value"][1] == "1" for s in up):
                break
            state = {s["metric"]["instance"]: s["value"][1] for s in up}
        except OSError as e:
            state = str(e)
        if time.time() > deadline:
            sys.exit(f"prometheus: targets not all up: {state}")
        time.sleep(2)
    exprs = list(expressions(json.load(open(dashboard))["panels"]))
    deadline = time.time() + 120
    while True:
        empty = [(title, e) for title, e in exprs if not query(base, e)]
        if not empty:
            break
        if time.time() > deadline:
            sys.exit("prometheus: dashboard expressions without data:\n" + "\n".join(f"  {t}: {e}" for t, e in empty))
        time.sleep(5)
    print(f"compose: prometheus has {targets} targets up; all {len(exprs)} expressions of the dashboard return data")


main()
