"""pypegasus3 against the compose cluster: set, then get, on table `stat` (argv: phase, metas,
and optionally another table)."""
import sys

from twisted.internet import defer, reactor

from pypegasus.base.ttypes import error_types
from pypegasus.pgclient import Pegasus

result = []


@defer.inlineCallbacks
def main(phase, metas, table):
    c = Pegasus(metas.split(","), table)
    ok = yield c.init()
    if not ok:
        raise RuntimeError("init failed")
    if phase == "write":
        for i in range(20):
            rc, _ = yield c.set("compose", "k%d" % i, "v%d" % i)
            if rc != error_types.ERR_OK.value:
                raise RuntimeError("set k%d: %r" % (i, rc))
    for i in range(20):
        rc, v = yield c.get("compose", "k%d" % i)
        if (rc, v) != (error_types.ERR_OK.value, b"v%d" % i):
            raise RuntimeError("get k%d: %r %r" % (i, rc, v))
    c.close()
    result.append("OK")


def run():
    d = main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "stat")
    d.addCallbacks(lambda _: reactor.stop(), lambda f: (print(f.getTraceback(), file=sys.stderr), reactor.stop()))


reactor.callWhenRunning(run)
reactor.run()
print(result[0] if result else "FAILED")
sys.exit(0 if result else 1)
