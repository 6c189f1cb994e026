"""pypegasus3 against the compose cluster while a replica is killed.

  write_loop.py METAS ACKED STOP    writes loop/k<i> = v<i> to table `stat`, one at a time, until
                                    the file STOP exists; appends each acknowledged i to ACKED
  write_loop.py METAS ACKED verify  reads every acknowledged key back
"""
import os
import sys

from twisted.internet import defer, reactor, task

from pypegasus.base.ttypes import error_types
from pypegasus.pgclient import Pegasus

result = []


@defer.inlineCallbacks
def main(metas, acked_path, stop):
    c = Pegasus(metas.split(","), "stat")
    ok = yield c.init()
    if not ok:
        raise RuntimeError("init failed")
    if stop == "verify":
        with open(acked_path) as f:
            acked = [int(line) for line in f if line.strip()]
        for i in acked:
            rc, v = yield c.get("loop", "k%d" % i)
            if (rc, v) != (error_types.ERR_OK.value, b"v%d" % i):
                raise RuntimeError("acknowledged k%d: %r %r" % (i, rc, v))
        result.append("%d acknowledged keys read back" % len(acked))
    else:
        i = 0
        with open(acked_path, "a") as acked:
            while not os.path.exists(stop):
                try:
                    rc, _ = yield c.set("loop", "k%d" % i, "v%d" % i)
                except Exception:  # a connection lost with the killed node: not acknowledged
                    rc = None
                if rc == error_types.ERR_OK.value:
                    acked.write("%d\n" % i)
                    acked.flush()
                else:
                    yield task.deferLater(reactor, 0.1, lambda: None)
                i += 1
        result.append("stopped after %d writes" % i)
    c.close()


def run():
    d = main(*sys.argv[1:4])
    d.addCallbacks(lambda _: reactor.stop(), lambda f: (print(f.getTraceback(), file=sys.stderr), reactor.stop()))


reactor.callWhenRunning(run)
reactor.run()
print(result[0] if result else "FAILED")
sys.exit(0 if result else 1)
