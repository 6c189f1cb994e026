"""Every operation of pypegasus3 against one meta address (argv[1]) and table `temp`.

Run by tests/e2e/pypegasus.rs; prints `OK <n>` on success, exits non-zero on the first
failed expectation.
"""
import sys

from twisted.internet import defer, reactor

from pypegasus.pgclient import Pegasus
from pypegasus.base.ttypes import error_types
from pypegasus.utils.tools import MultiGetOptions, ScanOptions
from pypegasus.rrdb.ttypes import filter_type

OK = error_types.ERR_OK.value
NOT_FOUND = error_types.ERR_OBJECT_NOT_FOUND.value
checks = 0


def expect(what, got, want):
    global checks
    checks += 1
    if got != want:
        raise AssertionError("%s: got %r, want %r" % (what, got, want))


@defer.inlineCallbacks
def main(meta):
    c = Pegasus([meta], "temp")
    ok = yield c.init()
    expect("init", bool(ok), True)

    expect("set", (yield c.set("hk", "sk", "value"))[0], OK)
    expect("get", (yield c.get("hk", "sk")), (OK, b"value"))
    expect("exist", (yield c.exist("hk", "sk"))[0], OK)
    expect("ttl forever", (yield c.ttl("hk", "sk")), (OK, -1))
    expect("set ttl", (yield c.set("hk", "ttl", "v", 100))[0], OK)
    rc, ttl = yield c.ttl("hk", "ttl")
    expect("ttl N", (rc, 99 <= ttl <= 100), (OK, True))
    expect("remove", (yield c.remove("hk", "sk"))[0], OK)
    expect("get removed", (yield c.get("hk", "sk"))[0], NOT_FOUND)
    expect("exist removed", (yield c.exist("hk", "sk"))[0], NOT_FOUND)

    binary = b"\x00\x01\xff\x00"
    expect("binary set", (yield c.set(binary, binary, binary))[0], OK)
    expect("binary get", (yield c.get(binary, binary)), (OK, binary))
    # pypegasus3's scanners decode keys as UTF-8: keep binary keys out of the scans below.
    expect("binary remove", (yield c.remove(binary, binary))[0], OK)

    kvs = {"k%d" % i: "v%d" % i for i in range(10)}
    expect("multi_set", (yield c.multi_set("mhk", kvs))[0], OK)
    rc, got = yield c.multi_get("mhk", set(kvs))
    expect("multi_get", (rc, {k.decode(): v.decode() for k, v in got.items()}), (OK, kvs))
    expect("sort_key_count", (yield c.sort_key_count("mhk")), (OK, 10))
    rc, keys = yield c.get_sort_keys("mhk")
    expect("get_sort_keys", (rc, sorted(k.decode() for k in keys)), (OK, sorted(kvs)))

    opt = MultiGetOptions()
    opt.sortkey_filter_type = filter_type.FT_MATCH_PREFIX
    opt.sortkey_filter_pattern = "k1"
    rc, got = yield c.multi_get_opt("mhk", "", "", opt)
    expect("multi_get_opt prefix", (rc, sorted(got)), (OK, [b"k1"]))
    opt = MultiGetOptions()
    opt.stop_inclusive = True
    rc, got = yield c.multi_get_opt("mhk", "k2", "k4", opt)
    expect("multi_get_opt range", (rc, sorted(got)), (OK, [b"k2", b"k3", b"k4"]))

    rc, count = yield c.multi_del("mhk", {"k0", "k1"})
    expect("multi_del", (rc, count), (OK, 2))
    expect("count after multi_del", (yield c.sort_key_count("mhk")), (OK, 8))

    # A hash scan with an explicit stop key, then unordered scanners over every partition.
    scanner = c.get_scanner("mhk", "k3", "k6", ScanOptions())
    seen = []
    while True:
        item = yield scanner.get_next()
        if item is None:
            break
        seen.append(item[0][1])
    scanner.close()
    expect("hash scan", seen, ["k3", "k4", "k5"])

    total = 0
    opt = ScanOptions()
    opt.batch_size = 3
    for s in c.get_unordered_scanners(4, opt):
        while True:
            item = yield s.get_next()
            if item is None:
                break
            total += 1
        s.close()
    # hk/ttl and mhk's 8 sort keys.
    expect("full scan", total, 9)
    c.close()


def run():
    def done(_):
        print("OK %d" % checks)
        reactor.stop()

    def failed(f):
        print("FAILED: %s" % f.getErrorMessage(), file=sys.stderr)
        f.printTraceback(file=sys.stderr)
        reactor.stop()
        global checks
        checks = -1

    d = main(sys.argv[1])
    d.addCallbacks(done, failed)


reactor.callWhenRunning(run)
reactor.run()
sys.exit(0 if checks > 0 else 1)
