"""Pegasus's custom wire types, written as Pegasus's clients write them: an error code as its
name (a string), an address and a partition id as one i64 each, a blob as binary. Code generated
from admin.thrift imports this module as `wire_base.ttypes`."""


class _Wire:
    # Generated code resolves the specs of the structs it refers to; these have no fields.
    thrift_spec = ()

    def __init__(self, value=None):
        self.value = value

    def __eq__(self, other):
        return type(self) is type(other) and self.value == other.value

    def __repr__(self):
        return "%s(%r)" % (type(self).__name__, self.value)


class error_code(_Wire):
    def read(self, iprot):
        self.value = iprot.readString()

    def write(self, oprot):
        oprot.writeString(self.value)


class rpc_address(_Wire):
    def read(self, iprot):
        self.value = iprot.readI64() & 0xFFFFFFFFFFFFFFFF

    def write(self, oprot):
        # The i64 on the wire is signed; the address is kept unsigned.
        v = self.value
        oprot.writeI64(v - (1 << 64) if v >= (1 << 63) else v)


class gpid(_Wire):
    def read(self, iprot):
        self.value = iprot.readI64()

    def write(self, oprot):
        oprot.writeI64(self.value)


class blob(_Wire):
    def read(self, iprot):
        self.value = iprot.readBinary()

    def write(self, oprot):
        oprot.writeBinary(self.value)
