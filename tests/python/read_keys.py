"""Reads sort key `v` of each hash key in argv[3:] from table argv[2] of the cluster whose
meta is argv[1], with pypegasus3; prints `<hash key> <value>` per key (`-` when absent), then
`OK <n>`. Run by tests/e2e/backup.rs on a restored table.
"""
import sys

from twisted.internet import defer, reactor

from pypegasus.pgclient import Pegasus
from pypegasus.base.ttypes import error_types

OK = error_types.ERR_OK.value
NOT_FOUND = error_types.ERR_OBJECT_NOT_FOUND.value
status = {"read": -1}


@defer.inlineCallbacks
def main(meta, table, keys):
    c = Pegasus([meta], table)
    ok = yield c.init()
    if not ok:
        raise AssertionError("init failed")
    for key in keys:
        rc, value = yield c.get(key, "v")
        if rc == OK:
            print("%s %s" % (key, value.decode()))
        elif rc == NOT_FOUND:
            print("%s -" % key)
        else:
            raise AssertionError("get %s: error %r" % (key, rc))
    c.close()
    status["read"] = len(keys)


def run():
    def done(_):
        print("OK %d" % status["read"])
        reactor.stop()

    def failed(f):
        print("FAILED: %s" % f.getErrorMessage(), file=sys.stderr)
        reactor.stop()

    d = main(sys.argv[1], sys.argv[2], sys.argv[3:])
    d.addCallbacks(done, failed)


reactor.callWhenRunning(run)
reactor.run()
sys.exit(0 if status["read"] >= 0 else 1)
