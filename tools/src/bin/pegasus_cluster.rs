//! `pegasus_cluster`: see [`pegasus_tools::cluster`].

fn main() -> std::process::ExitCode {
    pegasus_tools::cluster::main()
}
