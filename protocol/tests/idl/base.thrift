// Pegasus's four custom wire types (idl/dsn.thrift of apache/incubator-pegasus). Pegasus declares
// them as structs but every client writes them by hand: `wire_base.py` holds those writers, so
// code generated from `admin.thrift` puts the same bytes on the wire as Pegasus's clients do.
namespace py wire_base

struct error_code {}
struct rpc_address {}
struct gpid {}
struct blob {}
